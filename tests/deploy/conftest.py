"""Fixtures of the deploy tests: the dashboard, the alert rules, promtool."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_files import DASHBOARD, PROMETHEUS_DIR


@pytest.fixture(scope="session")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="session")
def alert_rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return loaded


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's `prometheus` package; a missing tool fails the test (CI installs it), never skips it."""
    path = shutil.which("promtool")
    assert path is not None, "promtool not found: apt-get install prometheus"
    return path
