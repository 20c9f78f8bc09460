"""Each service has its own metrics port, and a taken port is one clear line and exit status 2."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from schemas.settings import SERVICE_METRICS_PORTS, Settings


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_inference_and_retrain_default_to_different_ports() -> None:
    settings = Settings()
    assert settings.metrics_port is None
    assert settings.metrics_port_of("inference") != settings.metrics_port_of("retrain")
    assert len(set(SERVICE_METRICS_PORTS.values())) == len(SERVICE_METRICS_PORTS)
    assert Settings(metrics_port=9200).metrics_port_of("retrain") == 9200


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["serve", "inference"], "BATTERY_CT_METRICS_PORT"),
        (["serve", "retrain"], "BATTERY_CT_METRICS_PORT"),
        (["serve", "api", "--host", "0.0.0.0"], "BATTERY_CT_API_PORT"),
    ],
)
def test_a_taken_port_is_one_line_naming_the_setting_and_exit_status_2(
    taken_port: int, command: list[str], variable: str
) -> None:
    env = {
        **os.environ,
        "BATTERY_CT_METRICS_PORT": str(taken_port),
        "BATTERY_CT_API_PORT": str(taken_port),
        # Nothing may be reached before the port is bound: no broker, no object store here.
        "BATTERY_CT_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "BATTERY_CT_S3_ENDPOINT": "127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "facade.cli", *command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"port {taken_port} is already in use" in done.stderr and variable in done.stderr
    assert "Traceback" not in done.stderr
