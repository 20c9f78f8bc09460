"""`battery-ct infra`: help, status without state, a missing tool, and the whole command.

The acceptance test runs the real command line: `infra up --env`, then a separate Python process
that knows only the printed variables produces and consumes a Kafka message and writes and reads
an S3 object; `infra down` leaves nothing listening.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facade.cli import main
from local_stack.free_ports import free_port, is_listening

REPO = Path(__file__).resolve().parents[2]


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


def test_cli_reports_a_missing_tool_with_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("BATTERY_CT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BATTERY_CT_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    assert main(["infra", "up"]) == 2
    assert "error: java not found" in capsys.readouterr().err
