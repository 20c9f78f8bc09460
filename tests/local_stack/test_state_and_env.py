"""local_stack.state and local_stack.env: what `up` recorded round-trips; the export lines read back as Settings."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from local_stack import InfraState, ServiceRecord
from local_stack.env import export_lines, infra_env
from local_stack.state import clear_state, load_state, save_state
from schemas.settings import Settings


def test_state_round_trips_and_clears(tmp_path: Path) -> None:
    state = InfraState(
        kafka=ServiceRecord(name="kafka", endpoint="127.0.0.1:19092", pid=123, start_ticks=456, log=tmp_path / "k.log"),
        s3=ServiceRecord(name="s3", endpoint="minio:9000"),
    )
    assert load_state(tmp_path) is None
    save_state(tmp_path, state)
    assert load_state(tmp_path) == state
    assert state.kafka.managed and not state.s3.managed
    clear_state(tmp_path)
    assert load_state(tmp_path) is None


def test_env_lines_name_every_setting_a_process_needs_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = InfraState(
        kafka=ServiceRecord(name="kafka", endpoint="127.0.0.1:19092", pid=1),
        s3=ServiceRecord(name="s3", endpoint="127.0.0.1:19000", pid=2),
    )
    settings = Settings(state_dir=tmp_path / "state dir", s3_secret_key="it's secret")
    lines = export_lines(infra_env(state, settings))
    env = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    read_back = Settings()

    assert read_back.kafka_bootstrap == "127.0.0.1:19092"
    assert read_back.s3_endpoint == "127.0.0.1:19000"
    assert read_back.s3_secret_key.get_secret_value() == "it's secret"
    assert read_back.s3_secure is False
    assert read_back.state_dir == tmp_path / "state dir"
