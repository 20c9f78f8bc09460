"""The retrain consumer against the real broker and S3 endpoint of the session fixtures.

In-process services with tiny 64 px models where nothing crashes; `python -m consumers.retrain`
subprocesses where a process is killed. Every wait is for messages arriving, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from consumers.inference.service import InferenceService
from consumers.retrain.manifest import MANIFEST_KEY, DatasetManifest
from consumers.retrain.service import RetrainService
from model_core.network import NetworkConfig
from model_core.registry import Registry
from model_core.scoring import PatchMemoryConfig
from model_core.training import TrainingConfig
from schemas.accepted import AcceptedScan
from schemas.dead_letters import DeadLetter
from schemas.model_updates import MODEL_UPDATE_KEY, ModelUpdate
from schemas.scans import ScanEvent
from schemas.settings import Settings
from schemas.verdicts import Verdict
from storage.object_store import ObjectStore
from storage.registry_store import S3BlobStore
from tests.helpers import consume_until, env_of, png_bytes, produce_messages, spiral_slice

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 64
TINY = TrainingConfig(
    network=NetworkConfig(image_size=SIZE, depth=2, base_filters=4),
    memory=PatchMemoryConfig.for_image_size(SIZE, bank_per_row=150),
    epochs=2,
    batch_size=8,
)


class Scans:
    """Uploads slices to the scans bucket and accepts them on the accepted topic."""

    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store
        self.rng = np.random.default_rng(7)
        self.count = 0
        store.ensure_bucket(settings.bucket_scans)

    def upload(self, count: int, *, pores: int = 0) -> list[str]:
        ids = []
        for _ in range(count):
            self.count += 1
            scan_id = f"cell-{self.count:04d}"
            self.store.put_bytes(
                self.settings.bucket_scans, f"{scan_id}.png", png_bytes(spiral_slice(self.rng, SIZE, pores))
            )
            ids.append(scan_id)
        return ids

    async def accept(self, scan_ids: Sequence[str], label: str, *, job_id: str | None = None) -> None:
        messages = [
            AcceptedScan(scan_id=s, image_url=f"s3://{self.settings.bucket_scans}/{s}.png", label=label, job_id=job_id)
            for s in scan_ids
        ]
        await self.raw([(m.scan_id.encode(), m.to_json()) for m in messages])

    async def raw(self, messages: list[tuple[bytes | None, bytes]]) -> None:
        await produce_messages(self.settings, self.settings.topic_accepted, messages)


async def updates(settings: Settings, count: int, timeout_s: float = 240) -> list[ModelUpdate]:
    records = await consume_until(settings, settings.topic_model_updates, count, timeout_s=timeout_s)
    assert all(r.key == MODEL_UPDATE_KEY for r in records)
    return [ModelUpdate.from_json(r.value or b"") for r in records]


@contextlib.asynccontextmanager
async def running(service: RetrainService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(service.run())
    try:
        yield task
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=120)


def registry_of(settings: Settings, store: ObjectStore) -> Registry:
    return Registry(S3BlobStore(store, settings.bucket_models), owner="test-reader")


def manifest_of(settings: Settings, store: ObjectStore) -> DatasetManifest:
    return DatasetManifest.from_json(store.get_bytes(settings.bucket_datasets, MANIFEST_KEY, max_bytes=1 << 26))


@pytest.fixture
def retrain_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"image_size": SIZE, "retrain_batch_size": 8, "retrain_max_age_s": 3.0, "metrics_port": 0}
    )


async def test_first_batch_trains_bad_input_is_dead_lettered_and_replays_do_not_grow_the_dataset(
    retrain_settings: Settings, object_store: ObjectStore
) -> None:
    settings = retrain_settings
    scans = Scans(settings, object_store)
    normals = scans.upload(8)
    object_store.put_bytes(settings.bucket_scans, "corrupt.png", b"\x89PNG\r\n\x1a\nnot really")
    bad = AcceptedScan(scan_id="x", image_url="s3://b/k.png", label="normal")
    poison: list[tuple[bytes | None, bytes]] = [
        (b"junk", b"{not json"),
        (b"major", bad.model_copy(update={"schema_version": "9.0"}).to_json()),
        (b"file", bad.model_copy(update={"image_url": "file:///etc/passwd"}).to_json()),
        (b"missing", bad.model_copy(update={"image_url": f"s3://{settings.bucket_scans}/nope.png"}).to_json()),
        (b"corrupt", bad.model_copy(update={"image_url": f"s3://{settings.bucket_scans}/corrupt.png"}).to_json()),
    ]
    service = RetrainService(settings, training=(TINY, TINY))
    async with running(service):
        await scans.raw(poison)
        await scans.accept(normals, "normal")
        [first] = await updates(settings, 1)
        letters = await consume_until(settings, settings.topic_dead_letter, 5)

        # The same scans again (a replay), one waited for by a facade job: nothing grows or trains.
        await scans.accept(normals, "normal", job_id="job-1")
        second = (await updates(settings, 2))[1]

    assert first.status == "promoted" and first.parent is None
    assert first.current_version == first.version and sorted(first.scan_ids) == sorted(normals)
    assert first.dataset_size == {"normal": 8, "defect": 0}
    assert first.new_validation_error is not None and first.threshold > 0
    registry = registry_of(settings, object_store)
    assert registry.current_version() == first.version
    assert registry.metadata(first.version).threshold == first.threshold

    reasons = {
        (letter.key or b"").decode(): DeadLetter.from_json(letter.value or b"").error_class for letter in letters
    }
    assert set(reasons) == {"junk", "major", "file", "missing", "corrupt"}
    assert "AcceptedScanError" in reasons["major"] and "UrlNotAllowed" in reasons["file"]
    assert "ObjectMissing" in reasons["missing"] and "ImageDecodeError" in reasons["corrupt"]

    assert second.version == first.version and second.job_ids == ["job-1"]
    assert second.reason is not None and "already" in second.reason
    assert registry.versions() == [first.version]
    assert manifest_of(settings, object_store).size_by_label() == {"normal": 8, "defect": 0}

    metric = service.registry.get_sample_value
    assert metric("battery_ct_retrains_total", {"outcome": "promoted"}) == 1
    assert metric("battery_ct_dataset_scans", {"label": "normal"}) == 8
    assert metric("battery_ct_current_model_info", {"version": first.version}) == 1
    assert metric("battery_ct_current_threshold") == pytest.approx(first.threshold)
    assert metric("battery_ct_dead_letters_total", {"reason": "invalid_message"}) == 2
    assert metric("battery_ct_dead_letters_total", {"reason": "object_missing"}) == 1
    assert total(service, "battery_ct_dead_letters_total") == 5


def total(service: RetrainService, name: str) -> float:
    """The sum of a counter over all its labels."""
    return sum(
        sample.value for family in service.registry.collect() for sample in family.samples if sample.name == name
    )


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


# -- a crash during training ----------------------------------------------------------------------


class Process:
    """`python -m consumers.retrain`, its output copied to a log; `reached(text)` fires when a line has it."""

    def __init__(self, settings: Settings, log: Path, wanted: str) -> None:
        self.wanted = wanted
        self.reached = threading.Event()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "consumers.retrain"],
            cwd=repo_root(),
            env=env_of(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._log = log.open("ab")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._log.write(line)
            self._log.flush()
            if self.wanted.encode() in line:
                self.reached.set()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=60)
        self._reader.join(timeout=10)
        self._log.close()


async def test_kill_during_training_redoes_the_batch_and_nothing_half_written_serves(
    retrain_settings: Settings, object_store: ObjectStore, tmp_path: Path
) -> None:
    settings = retrain_settings.model_copy(update={"epochs": 3, "instance_id": "crash-test"})
    scans = Scans(settings, object_store)
    normals = scans.upload(8)
    await scans.accept(normals, "normal")

    first = Process(settings, tmp_path / "first.log", wanted="epoch 1/3")
    try:
        assert await asyncio.to_thread(first.reached.wait, 300), (tmp_path / "first.log").read_text()
        os.kill(first.popen.pid, signal.SIGKILL)  # in the middle of training
    finally:
        first.stop()
    registry = registry_of(settings, object_store)
    assert registry.current_version() is None
    assert await consume_until(settings, settings.topic_model_updates, 0, settle_s=1.0) == []

    second = Process(settings, tmp_path / "second.log", wanted="promoted")
    try:
        [update] = await updates(settings, 1, timeout_s=300)
        late = await consume_until(settings, settings.topic_model_updates, 1, settle_s=2.0)
    finally:
        second.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.popen.wait, 60)
        second.stop()
    assert second.popen.returncode == 0
    assert len(late) == 1  # exactly one update: the batch was redone once, not twice
    assert update.status == "promoted" and sorted(update.scan_ids) == sorted(normals)
    assert registry.current_version() == update.version
    assert registry.status(update.version).status in ("candidate", "promoted")
    for version in registry.versions():  # every published version is complete and verifies
        registry.fetch(version, tmp_path / "fetched" / version)
    assert manifest_of(settings, object_store).size_by_label() == {"normal": 8, "defect": 0}


# -- with the inference consumer: promotion, a poisoned batch, a rollback --------------------------


async def serving(inference: InferenceService, version: str, timeout_s: float = 120) -> None:
    """Return once the inference consumer serves `version` (it swaps models in the background)."""
    await asyncio.wait_for(inference.served.wait_for_version(version), timeout_s)


async def verdict_for(settings: Settings, scans: Scans, seen: int) -> Verdict:
    """Upload one normal slice, announce it on the scans topic, and return its verdict."""
    [scan_id] = scans.upload(1)
    event = ScanEvent(scan_id=scan_id, bucket=settings.bucket_scans, key=f"{scan_id}.png")
    await produce_messages(settings, settings.topic_scans, [(scan_id.encode(), event.to_json())])
    records = await consume_until(settings, settings.topic_verdicts, seen + 1, timeout_s=120)
    verdict = Verdict.from_json(records[-1].value or b"")
    assert verdict.scan_id == scan_id
    return verdict


async def test_promotion_poisoned_batch_and_rollback_reach_the_inference_consumer(
    retrain_settings: Settings, object_store: ObjectStore
) -> None:
    from model_core.registry import Registry as WritingRegistry
    from producers.model_updates import publish_model_update
    from schemas.model_updates import ModelUpdate

    settings = retrain_settings.model_copy(update={"retrain_batch_size": 64})
    scans = Scans(settings, object_store)
    retrain = RetrainService(settings, training=(TINY, TINY))
    async with running(retrain):
        await scans.accept(scans.upload(32), "normal")
        [initial] = await updates(settings, 1)
        assert initial.status == "promoted"

        inference = InferenceService(settings.model_copy(update={"metrics_port": 0}))
        task = asyncio.create_task(inference.run())
        try:
            await serving(inference, initial.version)
            # Known defects: the threshold is re-evaluated, a new version broadcast and served.
            await scans.accept(scans.upload(6, pores=1), "defect")
            promoted = (await updates(settings, 2))[1]
            assert promoted.status == "promoted" and promoted.version != initial.version
            await serving(inference, promoted.version)
            verdict = await verdict_for(settings, scans, 0)
            assert verdict.model_version == promoted.version and verdict.threshold == pytest.approx(promoted.threshold)

            # A poisoned batch: slices riddled with pores accepted as normal. The gate refuses it.
            await scans.accept(scans.upload(24, pores=12), "normal")
            rejected = (await updates(settings, 3))[2]
            assert rejected.status == "rejected", rejected.reason
            assert rejected.current_version == promoted.version
            verdict = await verdict_for(settings, scans, 1)
            assert verdict.model_version == promoted.version

            # Rollback (what `battery-ct checkpoints rollback` does): later verdicts carry the old version.
            registry = WritingRegistry(S3BlobStore(object_store, settings.bucket_models), owner="operator")
            previous = await asyncio.to_thread(registry.rollback, initial.version, reason="test")
            await publish_model_update(settings, ModelUpdate.rolled_back(registry.metadata(initial.version), previous))
            await serving(inference, initial.version)
            verdict = await verdict_for(settings, scans, 2)
            assert verdict.model_version == initial.version
            assert verdict.threshold == pytest.approx(initial.threshold)
        finally:
            inference.stop.set()
            await asyncio.wait_for(task, timeout=60)


# -- a second instance started by mistake ---------------------------------------------------------


async def test_a_second_instance_does_not_write_until_the_first_is_gone(
    retrain_settings: Settings, object_store: ObjectStore
) -> None:
    scans = Scans(retrain_settings, object_store)
    one = RetrainService(retrain_settings.model_copy(update={"instance_id": "one"}), training=(TINY, TINY))
    two = RetrainService(retrain_settings.model_copy(update={"instance_id": "two"}), training=(TINY, TINY))
    async with running(two) as task_two, running(one) as task_one:
        await scans.accept(scans.upload(8), "normal")
        [first] = await updates(retrain_settings, 1)
        await consume_until(retrain_settings, retrain_settings.topic_model_updates, 1, settle_s=2.0)
        assert one.loop is not None and two.loop is not None
        writers = [s for s in (one, two) if s.loop is not None and s.loop.updates]
        assert len(writers) == 1  # the group gives the accepted partition to one instance only
        registry = registry_of(retrain_settings, object_store)
        assert registry.versions() == [first.version] == [registry.current_version()]

        # The writer goes away; the other takes the partition over and continues from its model.
        owner, other = (one, two) if writers[0] is one else (two, one)
        owner.stop.set()
        await asyncio.wait_for(task_one if owner is one else task_two, timeout=120)
        await scans.accept(scans.upload(8), "normal")
        second = (await updates(retrain_settings, 2))[1]
        assert other.loop is not None and [u.version for u in other.loop.updates] == [second.version]
        assert second.parent == first.version
        assert registry.versions() == [first.version, second.version]


async def test_a_rollback_request_moves_the_pointer_and_is_answered_once_a_bad_one_is_dead_lettered(
    retrain_settings: Settings, object_store: ObjectStore, tiny_checkpoints: dict[str, Path]
) -> None:
    """The control topic: what the facade's rollback endpoint asks; the retrain consumer, the
    registry's single writer, carries it out and answers with the update naming the request."""
    from schemas.control import RollbackRequest

    settings = retrain_settings
    object_store.ensure_bucket(settings.bucket_models)
    registry = registry_of(settings, object_store)
    first = registry.publish(tiny_checkpoints["v1"])
    registry.promote(first)
    second = registry.publish(tiny_checkpoints["v2"])
    registry.promote(second)
    service = RetrainService(settings, training=(TINY, TINY))
    async with running(service):
        await produce_messages(
            settings,
            settings.topic_control,
            [
                (b"bad", b"{not json"),
                (b"none", RollbackRequest(request_id="r0", version="v9999-0000000000000000").to_json()),
                (first.encode(), RollbackRequest(request_id="r1", version=first, reason="operator").to_json()),
            ],
        )
        [update] = await updates(settings, 1)
        letters = await consume_until(settings, settings.topic_dead_letter, 2)
    assert (update.status, update.current_version, update.parent) == ("rolled_back", first, second)
    assert update.job_ids == ["r1"] and update.reason == "operator"
    assert registry.current_version() == first
    assert sorted((letter.key or b"").decode() for letter in letters) == ["bad", "none"]
    assert service.registry.get_sample_value("battery_ct_current_model_info", {"version": first}) == 1
