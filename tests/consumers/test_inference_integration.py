"""The inference consumer against the real broker and S3 endpoint of the session fixtures.

A tiny 64 px detector is trained once per session and registered in each test's model bucket.
In-process services where nothing crashes; `python -m consumers.inference` subprocesses where a
process is killed. Every wait is for an event (messages arriving), bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord
from PIL import Image

from consumers.inference.service import InferenceService
from model_core.registry import Registry
from schemas.dead_letters import DeadLetter
from schemas.model_updates import MODEL_UPDATE_KEY, ModelUpdate
from schemas.recipes import Recipe
from schemas.scans import ScanEvent
from schemas.settings import Settings
from schemas.verdicts import Verdict
from storage.object_store import ObjectStore
from tests.helpers import ConsumeTimeout, consume_until, env_of, png_bytes, produce_messages, spiral_slice

pytestmark = pytest.mark.integration

SIZE = 64
REPO = Path(__file__).resolve().parents[2]


# -- data and model ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def trained_checkpoints(tiny_checkpoints: dict[str, Path]) -> dict[str, Path]:
    """v1 serves first, v2 is promoted later, `bad` is damaged in the store once published."""
    return {"v1": tiny_checkpoints["v1"], "v2": tiny_checkpoints["v2"], "bad": tiny_checkpoints["v3"]}


def registry_of(store: ObjectStore, settings: Settings) -> Registry:
    from storage.registry_store import S3BlobStore

    store.ensure_bucket(settings.bucket_models)
    return Registry(S3BlobStore(store, settings.bucket_models))


@pytest.fixture
def served(settings: Settings, object_store: ObjectStore, trained_checkpoints: dict[str, Path]) -> Settings:
    """The test's settings with v1 promoted in its registry and its scans bucket made."""
    registry = registry_of(object_store, settings)
    registry.promote(registry.publish(trained_checkpoints["v1"]))
    object_store.ensure_bucket(settings.bucket_scans)
    return settings.model_copy(update={"metrics_port": 0, "batch_size": 8, "batch_linger_ms": 20})


def serving_version(settings: Settings, store: ObjectStore) -> str:
    version = registry_of(store, settings).current_version()
    assert version is not None
    return str(version)


# -- Kafka helpers ------------------------------------------------------------------------------


async def read(
    settings: Settings, topic: str, *, at_least: int, within_s: float = 120.0, idle_s: float = 0.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Committed messages of `topic`: at least `at_least`, then `idle_s` more of quiet (duplicates)."""
    return await consume_until(settings, topic, at_least, within_s, settle_s=idle_s)


async def nothing_on(settings: Settings, topic: str, *, within_s: float) -> bool:
    try:
        await consume_until(settings, topic, 1, within_s)
    except ConsumeTimeout as exc:
        return exc.records == []
    return False


def verdicts_of(records: list[ConsumerRecord[bytes, bytes]]) -> list[Verdict]:
    return [Verdict.from_json(r.value) for r in records]


async def upload_scans(
    settings: Settings, store: ObjectStore, count: int, *, prefix: str, seed: int = 1
) -> list[ScanEvent]:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(count):
        key = f"{prefix}/cell-{i:04d}.png"
        await asyncio.to_thread(
            store.put_bytes, settings.bucket_scans, key, png_bytes(spiral_slice(rng, SIZE, pores=int(i % 5 == 0)))
        )
        events.append(ScanEvent(scan_id=f"{prefix}/cell-{i:04d}", bucket=settings.bucket_scans, key=key))
    return events


async def publish_events(settings: Settings, events: list[ScanEvent]) -> None:
    await produce_messages(settings, settings.topic_scans, [(e.scan_id.encode(), e.to_json()) for e in events])


def total(service: InferenceService, name: str) -> float:
    """The sum of a metric over all its labels."""
    return sum(s.value for m in service.registry.collect() for s in m.samples if s.name == name)


@pytest.fixture
async def running(served: Settings) -> AsyncIterator[InferenceService]:
    """An in-process consumer that also stores heat maps."""
    service = InferenceService(served.model_copy(update={"heatmaps": True}))
    task = asyncio.create_task(service.run())
    yield service
    service.stop.set()
    await asyncio.wait_for(task, timeout=60)


# -- subprocesses -------------------------------------------------------------------------------


@pytest.fixture
def consumer_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Inference consumers started as `python -m consumers.inference`; killed if a test leaves one."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def start_consumer(
    processes: list[subprocess.Popen[bytes]], settings: Settings, log: Path, **overrides: Any
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "consumers.inference"],
        cwd=REPO,
        env=env_of(settings, **overrides),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    processes.append(process)
    return process


# -- the tests ----------------------------------------------------------------------------------


async def test_good_and_poison_messages_each_get_exactly_one_outcome(
    served: Settings, object_store: ObjectStore, running: InferenceService
) -> None:
    settings = served
    good = await upload_scans(settings, object_store, 6, prefix="good")
    await asyncio.to_thread(
        object_store.put_bytes, settings.bucket_scans, "bad/corrupt.png", b"\x89PNG\r\n\x1a\n broken"
    )
    await asyncio.to_thread(object_store.put_bytes, settings.bucket_scans, "bad/not-an-image.png", b"hello world")
    unknown_major = json.loads(good[0].to_json())
    unknown_major["schema_version"] = "9.0"
    notification = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{settings.bucket_scans}/good/cell-0001.png",
        "Records": [
            {
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": settings.bucket_scans}, "object": {"key": "good%2Fcell-0001.png", "size": 1}},
            }
        ],
    }
    await publish_events(settings, good)
    poison: list[tuple[bytes | None, bytes]] = [
        (b"p1", b"{not json"),
        (b"p2", json.dumps(unknown_major).encode()),
        (b"p3", ScanEvent(scan_id="bad/missing", bucket=settings.bucket_scans, key="bad/missing.png").to_json()),
        (b"p4", ScanEvent(scan_id="bad/corrupt", bucket=settings.bucket_scans, key="bad/corrupt.png").to_json()),
        (b"p5", ScanEvent(scan_id="bad/text", bucket=settings.bucket_scans, key="bad/not-an-image.png").to_json()),
    ]
    await produce_messages(settings, settings.topic_scans, [*poison, (None, json.dumps(notification).encode())])

    verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=7, idle_s=2))
    letters = [
        DeadLetter.from_json(r.value) for r in await read(settings, settings.topic_dead_letter, at_least=5, idle_s=1)
    ]

    assert Counter(v.scan_id for v in verdicts) == Counter({**{e.scan_id: 1 for e in good}, "good/cell-0001": 2})
    assert {v.model_version for v in verdicts} == {serving_version(settings, object_store)}
    assert all(v.timings is not None and v.timings.model_ms > 0 for v in verdicts)
    assert sorted(letter.key or "" for letter in letters) == ["p1", "p2", "p3", "p4", "p5"]
    by_key = {letter.key: letter for letter in letters}
    assert by_key["p1"].original_payload() == b"{not json"
    assert "major" in by_key["p2"].error_message
    assert "Missing" in by_key["p3"].error_class
    assert "ImageDecodeError" in by_key["p4"].error_class
    for verdict in verdicts:
        assert verdict.heatmap_url is not None
        bucket, _, key = verdict.heatmap_url.removeprefix("s3://").partition("/")
        assert bucket == settings.bucket_heatmaps
        heatmap = await object_store.aget_bytes(bucket, key, max_bytes=10_000_000)
        assert Image.open(io.BytesIO(heatmap)).format == "PNG"
    assert total(running, "battery_ct_scans_total") == 7
    assert total(running, "battery_ct_dead_letters_total") == 5
    assert running.health.ready


async def test_a_promoted_model_is_hot_swapped_and_a_bad_one_refused(
    served: Settings, object_store: ObjectStore, running: InferenceService, trained_checkpoints: dict[str, Path]
) -> None:
    settings = served
    first = serving_version(settings, object_store)
    await publish_events(settings, await upload_scans(settings, object_store, 2, prefix="before"))
    verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=2))
    assert {v.model_version for v in verdicts} == {first}

    registry = registry_of(object_store, settings)
    bad = registry.publish(trained_checkpoints["bad"])
    # Damage one file of the published checkpoint in the store: its hash no longer matches.
    victim = next(p.name for p in trained_checkpoints["bad"].iterdir() if p.is_file() and p.name != "metadata.json")
    object_store.put_bytes(settings.bucket_models, f"versions/{bad}/{victim}", b"not the model")
    registry.promote(bad)
    update = ModelUpdate(status="promoted", version=bad, current_version=bad, threshold=0.1)
    await produce_messages(settings, settings.topic_model_updates, [(MODEL_UPDATE_KEY, update.to_json())])
    # Only what the registry names current is followed: the next promotion waits until this one was tried.
    await asyncio.wait_for(running.served.wait_for_refusal(bad), timeout=120)
    good = registry.publish(trained_checkpoints["v2"])
    registry.promote(good)
    update = ModelUpdate(status="promoted", version=good, current_version=good, threshold=0.1)
    await produce_messages(settings, settings.topic_model_updates, [(MODEL_UPDATE_KEY, update.to_json())])

    # The swap happens in the background: judge one scan at a time until a verdict names v2.
    versions = []
    for attempt in range(60):
        await publish_events(settings, await upload_scans(settings, object_store, 1, prefix=f"probe-{attempt}"))
        verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=3 + attempt))
        versions = [v.model_version for v in verdicts if v.scan_id.startswith(f"probe-{attempt}/")]
        if versions == [good]:
            break
    assert versions == [good]
    # The bad checkpoint was tried and refused before v2.
    assert running.registry.get_sample_value("battery_ct_model_load_failures_total") == 1
    assert running.registry.get_sample_value("battery_ct_model_info", {"version": good}) == 1
    assert running.registry.get_sample_value("battery_ct_model_info", {"version": first}) is None


@pytest.mark.slow
async def test_kill_9_midway_and_a_restart_judge_every_scan_exactly_once(
    served: Settings, object_store: ObjectStore, consumer_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    settings = served.model_copy(update={"instance_id": "crashy"})
    events = await upload_scans(settings, object_store, 60, prefix="crash")
    await publish_events(settings, events)
    log = tmp_path / "consumer.log"
    first = start_consumer(consumer_processes, settings, log)
    assert len(await read(settings, settings.topic_verdicts, at_least=8, within_s=180)) >= 8, log.read_text()[-3000:]
    first.kill()  # SIGKILL in the middle of the stream: a transaction may be open
    first.wait(timeout=30)

    second = start_consumer(consumer_processes, settings, log)
    verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=60, within_s=240, idle_s=3))
    counts = Counter(v.scan_id for v in verdicts)
    assert set(counts) == {e.scan_id for e in events}, log.read_text()[-3000:]
    assert set(counts.values()) == {1}

    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0


@pytest.mark.slow
async def test_two_consumers_share_four_partitions_and_judge_each_scan_once(
    served: Settings, object_store: ObjectStore, consumer_processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    settings = served
    events = await upload_scans(settings, object_store, 40, prefix="scale")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = start_consumer(consumer_processes, settings, logs[0], instance_id="a")
    b = start_consumer(consumer_processes, settings, logs[1], instance_id="b")
    await publish_events(settings, events)
    verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=40, within_s=240, idle_s=3))
    counts = Counter(v.scan_id for v in verdicts)
    assert set(counts) == {e.scan_id for e in events}
    assert set(counts.values()) == {1}
    for process in (a, b):
        process.send_signal(signal.SIGTERM)
    assert [a.wait(timeout=60), b.wait(timeout=60)] == [0, 0]
    # Both took part: each was assigned partitions of the 4.
    assert all("assigned partitions ['" in log.read_text() for log in logs)


class TcpProxy:
    """A TCP relay in front of the S3 endpoint that the test can take down and bring back."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # kill the client's pooled keep-alive connections too
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.mark.slow
async def test_an_object_store_outage_is_waited_out_without_dead_letters(
    served: Settings, object_store: ObjectStore
) -> None:
    proxy = TcpProxy(served.s3_endpoint)
    await proxy.start()
    settings = served.model_copy(update={"s3_endpoint": f"127.0.0.1:{proxy.port}"})
    service = InferenceService(settings)
    task = asyncio.create_task(service.run())
    try:
        await publish_events(settings, await upload_scans(settings, object_store, 2, prefix="warm"))
        assert len(await read(settings, settings.topic_verdicts, at_least=2)) == 2

        await proxy.stop()
        events = await upload_scans(settings, object_store, 10, prefix="outage")  # straight to S3, not via the proxy
        await publish_events(settings, events)
        await asyncio.sleep(10)  # the outage itself: ten seconds of an unreachable object store
        assert task.done() is False
        await proxy.start()

        verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=12, within_s=180, idle_s=2))
        assert Counter(v.scan_id for v in verdicts if v.scan_id.startswith("outage/")) == {e.scan_id: 1 for e in events}
        assert await nothing_on(settings, settings.topic_dead_letter, within_s=3)
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=60)
        await proxy.stop()


@pytest.fixture
def dedicated_broker(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Callable[[], None]]]:
    """A broker of this test's own (local_stack, data kept across restarts) and a function that
    stops it and starts it again on the same ports."""
    from local_stack.free_ports import pick_port
    from local_stack.jars import ensure_kafka_libs
    from local_stack.kafka import start_kafka
    from local_stack.processes import stop

    state_dir = tmp_path / "broker"
    libs = ensure_kafka_libs(settings.kafka_libs_dir)
    broker_port = pick_port(None)
    controller_port = pick_port(None, avoid={broker_port})
    running = [start_kafka(state_dir, libs, broker_port=broker_port, controller_port=controller_port)]

    def stop_broker() -> None:
        record, process = running.pop()
        if record.pid is not None:
            stop(record.pid, record.start_ticks)
        process.wait(timeout=30)

    def restart() -> None:
        stop_broker()
        running.append(start_kafka(state_dir, libs, broker_port=broker_port, controller_port=controller_port))

    try:
        yield settings.model_copy(update={"kafka_bootstrap": running[0][0].endpoint}), restart
    finally:
        if running:
            stop_broker()


@pytest.mark.slow
async def test_a_broker_restart_midway_loses_and_duplicates_nothing(
    dedicated_broker: tuple[Settings, Callable[[], None]],
    object_store: ObjectStore,
    trained_checkpoints: dict[str, Path],
) -> None:
    from runtime.topics import ensure_topics, standard_topics

    settings, restart = dedicated_broker
    registry = registry_of(object_store, settings)
    registry.promote(registry.publish(trained_checkpoints["v1"]))
    object_store.ensure_bucket(settings.bucket_scans)
    settings = settings.model_copy(update={"metrics_port": 0, "batch_size": 4, "batch_linger_ms": 5})
    await ensure_topics(settings, standard_topics(settings))
    events = await upload_scans(settings, object_store, 60, prefix="restart")
    service = InferenceService(settings)
    task = asyncio.create_task(service.run())
    try:
        await publish_events(settings, events)
        await read(settings, settings.topic_verdicts, at_least=4, within_s=180)
        await asyncio.to_thread(restart)  # SIGTERM, wait for exit, start again on the same ports
        assert not task.done()
        verdicts = verdicts_of(await read(settings, settings.topic_verdicts, at_least=60, within_s=300, idle_s=3))
        assert Counter(v.scan_id for v in verdicts) == {e.scan_id: 1 for e in events}
        assert await nothing_on(settings, settings.topic_dead_letter, within_s=2)
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=120)


async def test_a_scan_is_measured_against_its_recipe_from_the_registry(
    served: Settings, object_store: ObjectStore, running: InferenceService
) -> None:
    from model_core.recipe_book import RecipeBook
    from producers.simulator.render import render_slice
    from producers.simulator.sampling import random_spec
    from storage.registry_store import S3BlobStore

    settings = served
    recipe = Recipe.model_validate(
        {
            "name": "line-21700",
            "tolerances": {"can.outer_diameter_mm": {"min": 20.9, "max": 21.1}, "can.max_dent_mm": {"max": 0.1}},
        }
    )
    await asyncio.to_thread(RecipeBook(S3BlobStore(object_store, settings.bucket_models)).add, recipe)
    rng = np.random.default_rng(4)
    specs = {"round": random_spec(rng, 256), "dented": random_spec(rng, 256, "can_dent", "high")}
    events = []
    for name, spec in specs.items():
        image, _ = render_slice(spec)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="TIFF")
        key = f"measured/{name}.tif"
        await asyncio.to_thread(object_store.put_bytes, settings.bucket_scans, key, buffer.getvalue())
        pixel_mm = 21.0 / 2 / spec.cell.radius  # a 21 mm can
        events.append(ScanEvent(scan_id=f"measured/{name}", bucket=settings.bucket_scans, key=key,
                                recipe="line-21700", pixel_mm=pixel_mm))  # fmt: skip
    events.append(events[0].model_copy(update={"scan_id": "measured/unknown", "recipe": "4680-x"}))
    await publish_events(settings, events)
    verdicts = {v.scan_id: v for v in verdicts_of(await read(settings, settings.topic_verdicts, at_least=3))}

    round_cell, dented = verdicts["measured/round"], verdicts["measured/dented"]
    for verdict in (round_cell, dented):
        assert verdict.recipe == "line-21700" and verdict.measurements is not None
        assert set(verdict.measurements) == {n for n in verdict.measurements if n.startswith("can.")}
        diameter = verdict.measurements["can.outer_diameter_mm"]
        assert diameter.unit == "mm" and diameter.value == pytest.approx(21.0, abs=0.1)
        assert verdict.timings is not None and verdict.timings.measure_ms is not None
    assert round_cell.conforms is True
    assert dented.conforms is False and dented.conformance is not None
    assert dented.conformance.failed == ("can.max_dent_mm",)
    unknown = verdicts["measured/unknown"]
    assert unknown.measurements is None and unknown.conforms is None
    assert unknown.conformance is not None and "not in the registry" in (unknown.conformance.reason or "")
    conformance = {
        s.labels["conforms"]: s.value
        for m in running.registry.collect()
        for s in m.samples
        if s.name == "battery_ct_conformance_total" and s.labels.get("recipe") == "line-21700"
    }
    assert (conformance["true"], conformance["false"]) == (1, 1)
