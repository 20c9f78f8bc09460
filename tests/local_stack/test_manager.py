"""local_stack.manager (`up`, `down`, `status`) and the broker's start: reuse what answers, leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local_stack.errors import MissingToolError
from local_stack.free_ports import is_listening, split_host_port
from local_stack.jars import libs_dir_for
from local_stack.state import load_state
from schemas.settings import Settings


def test_the_broker_config_is_rendered_into_the_state_directory(tmp_path: Path) -> None:
    from local_stack.kafka import LOG4J, _java_command, kafka_paths, render_config

    config = render_config(tmp_path, broker_port=19092, controller_port=19093)
    data, logs, expected = kafka_paths(tmp_path)
    assert config == expected and data.is_dir() and logs.is_dir()
    text = config.read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19092" in text and f"log.dirs={data}" in text
    assert "controller.quorum.voters=1@127.0.0.1:19093" in text
    log4j = config.with_name("log4j.properties")
    assert log4j.read_bytes() == LOG4J.read_bytes()
    command = _java_command("java", tmp_path / "libs", logs, config, "kafka.Kafka", str(config))
    assert f"-Dlog4j.configuration=file:{log4j}" in command


def test_cluster_ids_never_look_like_an_option() -> None:
    from local_stack.kafka import new_cluster_id

    ids = {new_cluster_id() for _ in range(2000)}  # about 1 in 64 raw ids would start with '-'
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


@pytest.mark.integration
def test_up_uses_endpoints_the_settings_name_when_they_answer_and_down_leaves_them(
    infra_settings: Settings, tmp_path: Path
) -> None:
    from local_stack import down, status, up

    named = Settings(
        kafka_bootstrap=infra_settings.kafka_bootstrap, s3_endpoint=infra_settings.s3_endpoint, state_dir=tmp_path
    )
    infra = up(named)
    assert infra.started == [] and infra.processes == []
    assert infra.state.kafka.endpoint == infra_settings.kafka_bootstrap and not infra.state.kafka.managed
    _, services = status(named)
    assert [s.answering for s in services] == [True, True]

    assert down(named) == []
    assert load_state(tmp_path) is None
    assert is_listening(*split_host_port(infra_settings.kafka_bootstrap, 9092))
    assert is_listening(*split_host_port(infra_settings.s3_endpoint, 9000))


@pytest.mark.integration
def test_a_broker_that_cannot_start_leaves_nothing_running(tmp_path: Path) -> None:
    from local_stack import InfraError, up

    broken_libs = libs_dir_for(tmp_path / "libs")
    broken_libs.mkdir(parents=True)
    (broken_libs / ".complete").write_text("no jars at all")
    settings = Settings(state_dir=tmp_path / "state", kafka_libs_dir=tmp_path / "libs")

    said: list[str] = []
    with pytest.raises(InfraError, match="formatting the Kafka storage"):
        up(settings, prefer_default_ports=False, reuse_configured=False, progress=said.append)

    assert load_state(tmp_path / "state") is None
    [moto_pid] = [int(line.split("pid ")[1].split(")")[0]) for line in said if "started moto" in line]
    with pytest.raises(ProcessLookupError):  # started, then stopped again when the broker failed
        os.kill(moto_pid, 0)


def test_without_java_up_says_so_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from local_stack import up

    monkeypatch.setenv("PATH", str(tmp_path))
    said: list[str] = []
    settings = Settings(state_dir=tmp_path / "state", kafka_libs_dir=tmp_path / "libs")
    with pytest.raises(MissingToolError, match="java not found"):
        up(settings, prefer_default_ports=False, reuse_configured=False, progress=said.append)
    assert said == []
    assert load_state(tmp_path / "state") is None
