"""deploy/prometheus: promtool accepts the scrape config and the rules, and the rules' unit tests pass."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.deploy.deploy_files import PROMETHEUS_DIR


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_scrape_config_and_its_rule_file(promtool: str) -> None:
    result = promtool_run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    result = promtool_run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_where_its_unit_tests_say(promtool: str) -> None:
    result = promtool_run(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test(alert_rules: dict[str, Any]) -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])}
    alerts = {rule["alert"] for group in alert_rules["groups"] for rule in group["rules"]}
    assert alerts <= tested, f"alerts without a promtool unit test: {sorted(alerts - tested)}"


def test_every_service_is_scraped() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"inference", "retrain", "review", "api"} <= jobs.keys()
    # Scaled inference and review replicas are found by DNS, one A record per container.
    assert jobs["inference"]["dns_sd_configs"][0]["names"] == ["inference"]
    assert jobs["review"]["dns_sd_configs"][0]["names"] == ["review"]
