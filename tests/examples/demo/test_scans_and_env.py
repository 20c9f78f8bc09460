from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydantic import SecretStr

from examples.demo.scans import simulated_scans
from examples.demo.services import settings_env
from schemas.settings import Settings


def test_simulated_scans_have_the_asked_share_known_truth_and_are_repeatable() -> None:
    scans = simulated_scans(10, 0.3, size=64, seed=3, prefix="run")
    assert [s.scan_id for s in scans] == [f"run-{i:04d}" for i in range(10)]
    defects = [s for s in scans if s.is_defect]
    assert len(defects) == 3
    assert all(s.mask is not None and s.mask.any() and s.severity for s in defects)
    assert all(s.mask is None and s.defect_type is None for s in scans if not s.is_defect)
    decoded = np.asarray(Image.open(io.BytesIO(scans[0].png)))
    assert decoded.dtype == np.uint16 and decoded.shape == (64, 64)
    again = simulated_scans(10, 0.3, size=64, seed=3, prefix="run")
    assert [s.png for s in again] == [s.png for s in scans]


def test_settings_env_writes_every_setting_as_an_operator_would() -> None:
    settings = Settings(api_key=SecretStr("k3y"), allowed_http_hosts=("minio:9000",), heatmaps=True)
    env = settings_env(settings, {"PATH": "/bin"}, metrics_port=9999)
    assert env["PATH"] == "/bin"
    assert env["BATTERY_CT_API_KEY"] == "k3y"
    assert env["BATTERY_CT_ALLOWED_HTTP_HOSTS"] == '["minio:9000"]'
    assert env["BATTERY_CT_HEATMAPS"] == "true"
    assert env["BATTERY_CT_METRICS_PORT"] == "9999"


def test_a_service_reading_that_environment_gets_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(api_key=SecretStr("k3y"), allowed_http_hosts=("minio:9000",), topic_scans="demo.x.scans")
    for name, value in settings_env(settings, {}).items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings
