"""Faults in mid-stream, on a broker and an S3 server of this test's own: the S3 server frozen for
15 s (SIGSTOP: requests hang, nothing refuses them), the broker killed with -9 and restarted, and
poison messages interleaved with valid scans. Every valid scan gets exactly one committed verdict,
none is dead-lettered, every poison message is, and the consumer keeps running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.inference.service import InferenceService
from schemas.dead_letters import DeadLetter
from schemas.scans import ScanEvent
from schemas.settings import Settings
from storage.object_store import ObjectStore
from tests.consumers.test_inference_integration import publish_events, read, registry_of, upload_scans, verdicts_of
from tests.helpers import produce_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FREEZE_S = 15


@pytest.fixture(scope="session")
def trained_checkpoints(tiny_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return {"v1": tiny_checkpoints["v1"]}


@pytest.fixture
def own_world(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, int, list[object]]]:
    """A broker (data kept across restarts) and an S3 server that only this test uses."""
    from local_stack.free_ports import free_port, pick_port
    from local_stack.jars import ensure_kafka_libs
    from local_stack.kafka import start_kafka
    from local_stack.processes import stop
    from local_stack.s3 import start_moto

    libs = ensure_kafka_libs(settings.kafka_libs_dir)
    broker_port = pick_port(None)
    controller_port = pick_port(None, avoid={broker_port})
    broker = [start_kafka(tmp_path / "broker", libs, broker_port=broker_port, controller_port=controller_port)]
    moto, moto_process = start_moto(tmp_path / "s3", port=free_port())
    assert moto.pid is not None
    own = settings.model_copy(
        update={
            "kafka_bootstrap": broker[0][0].endpoint,
            "s3_endpoint": moto.endpoint,
            "metrics_port": 0,
            "batch_size": 4,
            "batch_linger_ms": 5,
            "kafka_libs_dir": settings.kafka_libs_dir,
        }
    )
    try:
        yield own, moto.pid, [tmp_path / "broker", libs, broker_port, controller_port, broker]
    finally:
        os.kill(moto.pid, signal.SIGCONT)
        stop(moto.pid, moto.start_ticks)
        moto_process.wait(timeout=30)
        for record, process in broker:
            if record.pid is not None and process.poll() is None:
                stop(record.pid, record.start_ticks)
            process.wait(timeout=30)


def kill_9_and_restart(broker_state: list[object]) -> None:
    from local_stack.kafka import start_kafka

    state_dir, libs, broker_port, controller_port, running = broker_state
    _record, process = running.pop()  # type: ignore[attr-defined]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    running.append(  # type: ignore[attr-defined]
        start_kafka(state_dir, libs, broker_port=broker_port, controller_port=controller_port)  # type: ignore[arg-type]
    )


def poison_messages(settings: Settings, round_: int) -> list[tuple[bytes, bytes]]:
    event = ScanEvent(scan_id=f"bad/{round_}", bucket=settings.bucket_scans, key=f"bad/{round_}.png")
    unknown_major = {**json.loads(event.to_json()), "schema_version": "9.0"}
    return [
        (f"r{round_}-json".encode(), b"{not json"),
        (f"r{round_}-major".encode(), json.dumps(unknown_major).encode()),
        (f"r{round_}-missing".encode(), event.to_json()),  # never uploaded
        (f"r{round_}-corrupt".encode(), event.model_copy(update={"key": "bad/corrupt.png"}).to_json()),
        (f"r{round_}-bucket".encode(), event.model_copy(update={"bucket": settings.bucket_models}).to_json()),
    ]


async def test_a_frozen_object_store_a_killed_broker_and_poison_lose_and_duplicate_nothing(
    own_world: tuple[Settings, int, list[object]], trained_checkpoints: dict[str, Path]
) -> None:
    from runtime.topics import ensure_topics, standard_topics

    settings, moto_pid, broker_state = own_world
    store = ObjectStore.from_settings(settings)
    for bucket in (settings.bucket_scans, settings.bucket_models):
        await asyncio.to_thread(store.ensure_bucket, bucket)
    registry = registry_of(store, settings)
    registry.promote(registry.publish(trained_checkpoints["v1"]))
    await asyncio.to_thread(store.put_bytes, settings.bucket_scans, "bad/corrupt.png", b"\x89PNG\r\n\x1a\n broken")
    await ensure_topics(settings, standard_topics(settings))
    rounds = [await upload_scans(settings, store, 12, prefix=f"round{i}", seed=i) for i in range(3)]
    valid = [event for batch in rounds for event in batch]

    service = InferenceService(settings)
    task = asyncio.create_task(service.run())
    try:
        # Round 0 as normal; round 1 while the object store is frozen; round 2 across a broker kill.
        await publish_events(settings, rounds[0])
        await produce_messages(settings, settings.topic_scans, poison_messages(settings, 0))
        await read(settings, settings.topic_verdicts, at_least=12, within_s=180)

        os.kill(moto_pid, signal.SIGSTOP)
        try:
            await publish_events(settings, rounds[1])
            await produce_messages(settings, settings.topic_scans, poison_messages(settings, 1))
            await asyncio.sleep(FREEZE_S)  # the fault itself: fifteen seconds of an object store that hangs
            assert not task.done()
        finally:
            os.kill(moto_pid, signal.SIGCONT)

        await publish_events(settings, rounds[2][:6])
        await asyncio.to_thread(kill_9_and_restart, broker_state)
        await publish_events(settings, rounds[2][6:])
        await produce_messages(settings, settings.topic_scans, poison_messages(settings, 2))

        verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=36, within_s=300, idle_s=3))
        letters = [
            DeadLetter.from_json(r.value)
            for r in await read(settings, settings.topic_dead_letter, at_least=15, within_s=120, idle_s=2)
        ]
        assert not task.done(), "the consumer died"
        assert Counter(v.scan_id for v in verdicts) == {e.scan_id: 1 for e in valid}
        expected = sorted(key.decode() for round_ in range(3) for key, _ in poison_messages(settings, round_))
        assert sorted(letter.key or "" for letter in letters) == expected
        reasons = {letter.key: letter.error_message for letter in letters}
        assert "not one this consumer reads" in reasons["r1-bucket"]
        assert service.health.ready
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=120)
