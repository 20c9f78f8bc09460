"""battery-ct infra: the pieces (ports, processes, state, env lines, jar cache) and the whole command.

The acceptance test runs the real command line: `infra up --env`, then a separate Python process
that knows only the printed variables produces and consumes a Kafka message and writes and reads
an S3 object; `infra down` leaves nothing listening.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facade.cli import main
from facade.infra import InfraState, ServiceRecord
from facade.infra.env import export_lines, infra_env
from facade.infra.errors import MissingToolError
from facade.infra.jars import cached_libs, ensure_kafka_libs, libs_dir_for
from facade.infra.ports import can_bind, free_port, is_listening, pick_port, split_host_port
from facade.infra.processes import is_alive, spawn, start_ticks, stop
from facade.infra.state import clear_state, load_state, save_state
from schemas.settings import Settings

REPO = Path(__file__).resolve().parents[2]


# -- ports ------------------------------------------------------------------------------------


def test_pick_port_keeps_a_free_preferred_port_and_replaces_a_taken_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        assert is_listening("127.0.0.1", busy)
        assert not can_bind("127.0.0.1", busy)
        replacement = pick_port(busy)
        assert replacement != busy and can_bind("127.0.0.1", replacement)
    free = free_port()
    assert pick_port(free) == free
    assert pick_port(free, avoid={free}) != free


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost:9092", ("localhost", 9092)),
        ("127.0.0.1:19092,127.0.0.1:19093", ("127.0.0.1", 19092)),
        ("broker", ("broker", 9092)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address, 9092) == expected


# -- processes --------------------------------------------------------------------------------


def test_stop_ends_the_process_it_started_and_only_that_one(tmp_path: Path) -> None:
    process = spawn(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"], log_file=tmp_path / "p.log"
    )
    ticks = start_ticks(process.pid)
    assert is_alive(process.pid, ticks)
    assert not is_alive(process.pid, (ticks or 0) + 1)  # same PID, other start time: someone else's process
    assert stop(process.pid, (ticks or 0) + 1) is False  # ... and is never signalled
    assert process.poll() is None

    assert stop(process.pid, ticks) is True
    assert process.poll() is not None or not is_alive(process.pid, ticks)
    assert stop(process.pid, ticks) is False


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print('ready', flush=True); time.sleep(99)"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # the handler is installed
    ticks = start_ticks(process.pid)
    assert stop(process.pid, ticks, timeout_s=0.5) is True
    assert not is_alive(process.pid, ticks)  # reaped by `stop` (it is our child here)
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
    process.wait(timeout=10)
    process.stdout.close()


# -- state and env ----------------------------------------------------------------------------


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


# -- the jar cache ----------------------------------------------------------------------------


def test_jar_cache_is_keyed_by_the_pom(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>1</project>")
    first = libs_dir_for(tmp_path / "libs", pom)
    assert cached_libs(tmp_path / "libs", pom) is None
    first.mkdir(parents=True)
    (first / ".complete").write_text("57 jars")
    assert ensure_kafka_libs(tmp_path / "libs", pom=pom) == first  # cached: Maven is not needed
    pom.write_text("<project>2</project>")
    assert libs_dir_for(tmp_path / "libs", pom) != first


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java on it
    with pytest.raises(MissingToolError, match="apt-get install maven"):
        ensure_kafka_libs(tmp_path / "libs", pom=pom)


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facade.infra.jars import require_java

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="Java 17"):
        require_java()


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["infra", "--help"], ["infra", "up", "--help"], ["infra", "down", "--help"]])
def test_help_explains(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert "Kafka" in capsys.readouterr().out


def test_status_without_state_says_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATTERY_CT_STATE_DIR", str(tmp_path))
    assert main(["infra", "status"]) == 1
    assert main(["infra", "down"]) == 0


def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facade.cli", "infra", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


CLIENT = textwrap.dedent(
    """
    import asyncio, os, uuid
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from minio import Minio
    import io

    async def kafka():
        topic = "acceptance-" + uuid.uuid4().hex[:8]
        producer = AIOKafkaProducer(bootstrap_servers=os.environ["BATTERY_CT_KAFKA_BOOTSTRAP"], acks="all")
        await producer.start()
        await producer.send_and_wait(topic, b"hello kafka")
        await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=os.environ["BATTERY_CT_KAFKA_BOOTSTRAP"],
                                    auto_offset_reset="earliest", isolation_level="read_committed")
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 60)
        finally:
            await consumer.stop()
        return record.value

    s3 = Minio(endpoint=os.environ["BATTERY_CT_S3_ENDPOINT"], access_key=os.environ["BATTERY_CT_S3_ACCESS_KEY"],
               secret_key=os.environ["BATTERY_CT_S3_SECRET_KEY"], region=os.environ["BATTERY_CT_S3_REGION"],
               secure=os.environ["BATTERY_CT_S3_SECURE"] == "true")
    s3.make_bucket(bucket_name="acceptance")
    s3.put_object(bucket_name="acceptance", object_name="a.txt", data=io.BytesIO(b"hello s3"), length=8)
    body = s3.get_object(bucket_name="acceptance", object_name="a.txt").read()
    print(asyncio.run(kafka()).decode(), body.decode())
    """
)


@pytest.mark.slow
@pytest.mark.integration
def test_up_env_then_a_separate_process_uses_it_then_down_leaves_nothing_listening(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BATTERY_CT_")}
    kafka_port, s3_port = free_port(), free_port()
    env = {
        **base,
        "BATTERY_CT_STATE_DIR": str(tmp_path / "state"),
        # Named but not answering: `up` starts its own there.
        "BATTERY_CT_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "BATTERY_CT_S3_ENDPOINT": f"127.0.0.1:{s3_port}",
    }
    if "BATTERY_CT_KAFKA_LIBS_DIR" in os.environ:
        env["BATTERY_CT_KAFKA_LIBS_DIR"] = os.environ["BATTERY_CT_KAFKA_LIBS_DIR"]
    try:
        started = _cli(["up", "--env"], env)
        assert started.returncode == 0, started.stderr
        exported = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in started.stdout.splitlines()
        )
        assert exported["BATTERY_CT_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{kafka_port}"
        assert exported["BATTERY_CT_S3_ENDPOINT"] == f"127.0.0.1:{s3_port}"
        assert "server.log" in started.stderr  # says where the logs are

        again = _cli(["up"], env)
        assert again.returncode == 0 and "already running" in again.stderr
        assert _cli(["status"], env).returncode == 0

        only_exported = {"PATH": base["PATH"], **exported}
        client = subprocess.run(
            [sys.executable, "-c", CLIENT], env=only_exported, capture_output=True, text=True, timeout=120, check=False
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.split() == ["hello", "kafka", "hello", "s3"]
    finally:
        stopped = _cli(["down"], env)
    assert stopped.returncode == 0, stopped.stderr
    state = tmp_path / "state"
    ports = [kafka_port, s3_port, *_controller_port(state)]
    assert [p for p in ports if is_listening("127.0.0.1", p)] == []
    assert _cli(["status"], env).returncode == 1


def _controller_port(state_dir: Path) -> list[int]:
    config = state_dir / "kafka" / "server.properties"
    for line in config.read_text().splitlines():
        if line.startswith("controller.quorum.voters="):
            return [int(line.rsplit(":", 1)[1])]
    return []


def test_cluster_ids_never_look_like_an_option() -> None:
    from facade.infra.kafka import new_cluster_id

    ids = {new_cluster_id() for _ in range(2000)}  # about 1 in 64 raw ids would start with '-'
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


@pytest.mark.integration
def test_up_uses_endpoints_the_settings_name_when_they_answer_and_down_leaves_them(
    infra_settings: Settings, tmp_path: Path
) -> None:
    from facade.infra import down, status, up

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
    from facade.infra import InfraError, up

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
    from facade.infra import up

    monkeypatch.setenv("PATH", str(tmp_path))
    said: list[str] = []
    settings = Settings(state_dir=tmp_path / "state", kafka_libs_dir=tmp_path / "libs")
    with pytest.raises(MissingToolError, match="java not found"):
        up(settings, prefer_default_ports=False, reuse_configured=False, progress=said.append)
    assert said == []
    assert load_state(tmp_path / "state") is None


def test_cli_reports_a_missing_tool_with_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("BATTERY_CT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BATTERY_CT_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    assert main(["infra", "up"]) == 2
    assert "error: java not found" in capsys.readouterr().err


def test_maven_download_lines_become_progress() -> None:
    from facade.infra.jars import _DOWNLOADED

    line = "Downloaded from central: https://repo.example/maven2/org/apache/kafka/kafka_2.13/3.9.2/kafka_2.13-3.9.2.jar (6.2 MB at 3.1 MB/s)"  # noqa: E501
    match = _DOWNLOADED.match(line)
    assert match is not None and match.group(1) == "kafka_2.13-3.9.2.jar"
    assert _DOWNLOADED.match("Downloading from central: https://repo.example/x.jar") is None
