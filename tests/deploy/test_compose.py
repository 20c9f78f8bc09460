"""docker-compose.yml: valid for docker compose with the example env file, and shaped as the
deployment needs (pinned images, scalable inference, health-gated start order, no secrets)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deploy_files import REPO

ENV_EXAMPLE = REPO / ".env.example"


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) where installed, else Debian's `docker-compose`; CI installs one."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy is not None, "neither `docker compose` nor `docker-compose` found: apt-get install docker-compose"
    return [legacy]


def compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "--env-file", str(env_file), "--project-directory", str(REPO), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The compose file as docker compose resolves it with the example env and the demo profile."""
    result = compose("--profile", "demo", "config")
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


def test_docker_compose_config_is_valid_with_the_example_env() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_a_missing_secret_is_refused_with_its_name(tmp_path: Path) -> None:
    env = tmp_path / "incomplete.env"
    kept = [line for line in ENV_EXAMPLE.read_text().splitlines() if "MINIO_ROOT_PASSWORD" not in line]
    env.write_text("\n".join(kept))
    result = compose("config", "-q", env_file=env)
    assert result.returncode != 0
    assert "MINIO_ROOT_PASSWORD" in result.stderr


def test_every_image_is_pinned(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
    services = resolved["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9.")
    assert re.fullmatch(r"quay\.io/minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", services["minio"]["image"])
    assert re.fullmatch(r"quay\.io/minio/mc:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", services["minio-init"]["image"])


def test_kafka_keeps_transactions_working_on_one_node(resolved: dict[str, Any]) -> None:
    env = resolved["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == "1"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == "1"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"


def test_an_upload_alone_produces_the_scan_event(resolved: dict[str, Any]) -> None:
    minio_env = resolved["services"]["minio"]["environment"]
    assert minio_env["MINIO_NOTIFY_KAFKA_ENABLE_PRIMARY"] == "on"
    assert minio_env["MINIO_NOTIFY_KAFKA_BROKERS_PRIMARY"] == "kafka:9092"
    scans_topic = resolved["services"]["inference"]["environment"].get("BATTERY_CT_TOPIC_SCANS", "ct.scans")
    assert minio_env["MINIO_NOTIFY_KAFKA_TOPIC_PRIMARY"] == scans_topic
    script = (REPO / "deploy" / "minio" / "init.sh").read_text()
    assert 'mc event add "$ALIAS/$BATTERY_CT_BUCKET_SCANS" "$ARN" --event put' in script
    assert 'ARN="arn:minio:sqs::PRIMARY:kafka"' in script


def test_inference_scales_and_everything_starts_after_its_dependencies_are_healthy(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    inference = services["inference"]
    # A fixed container name or host port would make `--scale inference=3` fail.
    assert "container_name" not in inference and "ports" not in inference
    for name in ("inference", "retrain", "api"):
        depends = services[name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
        assert depends["topics-init"]["condition"] == "service_completed_successfully", name
    assert services["topics-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for name in ("kafka", "minio", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_the_demo_profile_streams_simulated_scans(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["model-bootstrap"]["profiles"] == ["demo"]
    loop = " ".join(services["simulator"]["command"])
    assert "battery-ct synth" in loop and "battery-ct upload --no-event" in loop
    default = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "profiles" not in default["services"]["inference"]


def test_no_secret_is_written_in_the_compose_file() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|API_KEY|ACCESS_KEY)\w*:\s", line):
            assert "${" in line, f"literal secret in docker-compose.yml: {line.strip()}"
    assert "change-me" not in text


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    assert {"kafka-data", "minio-data", "prometheus-data", "grafana-data"} <= set(resolved["volumes"])


def test_the_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2, "multi-stage"
    assert "USER battery-ct" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "python:3.11" in dockerfile
    # Exactly the runtime dependencies of pyproject.toml, which pins them.
    assert 'project["dependencies"]' in dockerfile and "pip install -r /tmp/requirements.txt" in dockerfile


def test_the_image_gets_every_installed_package() -> None:
    """Each package pyproject.toml installs is copied into the image and let through its dockerignore."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"local_stack", "examples"} <= set(packages)
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/" in ignore, package
    # The broker's files are package data of local_stack, so a non-editable install has them too.
    assert "broker/*" in project["tool"]["setuptools"]["package-data"]["local_stack"]
