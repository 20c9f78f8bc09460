"""The one loop that owns poll -> intake -> batch -> retrain -> publish -> commit.

    poll accepted scans --intake (fetch, check, copy into the dataset)--> pending batch
    batch due (count or age) --> plan --> retrain job (worker thread) --> manifest saved
        --> one transaction: ModelUpdate + dead letters + the batch's offsets

Offsets are committed only in the transaction that carries the batch's update, so a crash at any
point before it redoes the batch from the uncommitted offsets. Polling, ownership (a rebalance
drops the pending batch, read again from the committed offsets) and the delivery are the shared
`runtime.delivery.BatchDelivery`; a retrained model is too costly to redo, so a failed delivery is
retried with the same messages while the batch is still owned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRebalanceListener

from consumers.retrain.batching import BatchPolicy
from consumers.retrain.intake import Intake, Taken
from consumers.retrain.job import Candidate, JobResult, RetrainJob
from consumers.retrain.manifest import DatasetManifest, add_scan, settle_batch
from consumers.retrain.metrics import RetrainMetrics
from consumers.retrain.plan import BatchPlan, batch_seed, plan_batch
from runtime.dead_letters import Poison
from runtime.delivery import BatchDelivery, Polled
from runtime.outbox import Outgoing
from runtime.records import InvalidMessage, SourceRecord, parse_record
from runtime.retry import Abandoned, is_retriable, retry_transient
from schemas.control import RollbackRequest
from schemas.model_updates import MODEL_UPDATE_KEY, ModelUpdate

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5  # an idle poll's wait before the loop looks at the stop flag again


@dataclass(frozen=True)
class LoopConfig:
    topic_model_updates: str
    topic_control: str = "ct.control"
    replay_factor: float = 2.0


@dataclass
class Pending:
    """The batch being gathered (in one generation of the delivery): scans taken in, poison
    refused, every record read."""

    generation: int = 0
    taken: list[Taken] = field(default_factory=list)
    poisons: list[Poison] = field(default_factory=list)
    records: list[SourceRecord] = field(default_factory=list)
    opened_at: float | None = None

    @property
    def polled(self) -> Polled:
        return Polled(self.generation, self.records)


ManifestIO = tuple[Callable[[], DatasetManifest], Callable[[DatasetManifest], None]]


class RetrainLoop:
    def __init__(
        self,
        delivery: BatchDelivery,
        intake: Intake,
        job: RetrainJob,
        manifest_io: ManifestIO,
        policy: BatchPolicy,
        metrics: RetrainMetrics,
        config: LoopConfig,
        *,
        stop: asyncio.Event,
    ) -> None:
        self._delivery = delivery
        self._intake = intake
        self._job = job
        self._load_manifest, self._save_manifest = manifest_io
        self._policy = policy
        self._metrics = metrics
        self._config = config
        self._stop = stop
        self._pending = Pending()
        self._reload = False
        self.manifest = DatasetManifest()
        self.updates: list[ModelUpdate] = []  # what this loop has broadcast (tests and logs)

    def listener(self) -> ConsumerRebalanceListener:
        return self._delivery.listener(on_revoked=self.drop_pending, on_assigned=self.reload_manifest)

    def drop_pending(self) -> None:
        """The pending batch is no longer ours (a rebalance): it is read again from the commit."""
        if self._pending.records:
            log.info("dropping the pending batch of %d messages: read again", len(self._pending.records))
        self._pending = Pending(generation=self._delivery.generation)

    def reload_manifest(self) -> None:
        """Read the manifest again before the next batch: another instance may have written it."""
        self._reload = True

    async def _load(self) -> None:
        self._reload = False
        self.manifest = await retry_transient(
            lambda: asyncio.to_thread(self._load_manifest), what="reading the dataset manifest", stop=self._stop
        )
        self._metrics.dataset(self.manifest.size_by_label())

    def _owns(self, pending: Pending) -> bool:
        """False once a rebalance took the batch's partition away (the new owner redoes it)."""
        return self._pending is pending and self._delivery.owns(pending.generation)

    async def run(self) -> None:
        try:
            await self._load()
            while not self._stop.is_set():
                if self._reload:
                    await self._load()
                await self._poll()
                pending = self._pending
                if self._policy.is_due(len(pending.taken), pending.opened_at, time.monotonic()):
                    await self._close_batch()
                elif pending.records and not pending.taken:
                    await self._deliver([], pending)  # only poison so far: dead-letter and commit now
        except Abandoned as exc:
            log.info("stopped while waiting for %s: the pending batch stays uncommitted", exc)

    async def _poll(self) -> None:
        pending = self._pending
        wait = self._policy.wait_s(len(pending.taken), pending.opened_at, time.monotonic(), idle_s=IDLE_POLL_S)
        room = max(1, self._policy.max_count - len(pending.taken))
        polled = await self._delivery.poll(room, timeout_ms=int(wait * 1000) + 1)
        if not self._delivery.owns(pending.generation):
            pending = self._pending = Pending(generation=polled.generation)
        for record in polled.records:
            if record.topic == self._config.topic_control:
                await self._control(record, polled.generation)  # at once: an operator waits for it
                continue
            try:
                taken = await self._intake.take(record)
            except Abandoned:
                raise
            except Exception as exc:
                if is_retriable(exc):
                    raise
                pending.poisons.append(Poison(record, exc))
            else:
                pending.taken.append(taken)
                if pending.opened_at is None:
                    pending.opened_at = time.monotonic()
            pending.records.append(record)

    async def _control(self, record: SourceRecord, generation: int) -> None:
        """A rollback request: the registry's pointer moved and the update broadcast, with the
        request's offset, in one transaction; a request that cannot be carried out is a dead letter."""
        messages: list[Outgoing] = []
        poisons: list[Poison] = []
        try:
            request = parse_control(record)
            reason = request.reason or f"rollback requested ({request.request_id})"
            metadata, previous = await retry_transient(
                lambda: asyncio.to_thread(self._job.roll_back, request.version, reason),
                what=f"rolling back to {request.version}",
                stop=self._stop,
            )
        except Abandoned:
            raise
        except Exception as exc:
            if is_retriable(exc):
                raise
            poisons.append(Poison(record, exc))
        else:
            update = ModelUpdate.rolled_back(metadata, previous, reason=reason).model_copy(
                update={"job_ids": [request.request_id]}
            )
            messages.append(Outgoing(self._config.topic_model_updates, MODEL_UPDATE_KEY, update.to_json()))
            self._metrics.current(update.current_version, update.threshold)
            log.info("rolled back to %s (was %s) for request %s", update.current_version, previous, request.request_id)
        if await self._delivery.deliver(Polled(generation, [record]), messages, poisons, retry=True):
            self.updates.extend(ModelUpdate.from_json(m.value) for m in messages)

    async def _close_batch(self) -> None:
        pending = self._pending
        manifest, changed = self.manifest, set[str]()
        for item in pending.taken:
            manifest, change = add_scan(manifest, item.scan)
            if change != "duplicate":
                changed.add(item.scan.sha256)
        has_model = await asyncio.to_thread(self._job.current) is not None
        plan = plan_batch(manifest, changed, has_model=has_model, replay_factor=self._config.replay_factor)
        scans = [item.scan for item in pending.taken]
        update: ModelUpdate | None = None
        log.info("batch of %d scans (%d new): %s", len(scans), len(changed), plan.action)
        if plan.action in ("train", "reevaluate"):
            batch_id = f"{batch_seed(changed):016x}"
            try:
                result = await self._retrain(plan, batch_id, pending)
            except _Revoked:
                log.warning("partitions revoked during the batch: nothing published, the new owner redoes it")
                return
            if result is not None:
                manifest = settle_batch(manifest, changed, result.version, rejected=result.status == "rejected")
                update = ModelUpdate.of_batch(result, scans, manifest.size_by_label())
        elif plan.action == "nothing" and any(s.job_id for s in scans):
            current = await asyncio.to_thread(self._job.current)
            if current is not None:
                update = ModelUpdate.unchanged(current.metadata, scans, manifest.size_by_label())
        elif plan.action == "wait":
            log.warning("no model yet and no normal scans to train one: %d defects wait in the dataset", len(changed))
        if not self._owns(pending):
            log.warning("partitions revoked during the batch: the manifest is left to the new owner")
            return
        await retry_transient(
            lambda: asyncio.to_thread(self._save_manifest, manifest), what="saving the manifest", stop=self._stop
        )
        self.manifest = manifest
        self._metrics.dataset(manifest.size_by_label())
        await self._deliver([update] if update is not None else [], pending)

    async def _retrain(self, plan: BatchPlan, batch_id: str, pending: Pending) -> JobResult | None:
        """The job's result; None when it failed for good; raises _Revoked when the batch is no longer ours."""
        started = time.monotonic()

        async def commit(candidate: Candidate) -> JobResult:
            # Checked before every attempt: an instance that lost the partition must not publish.
            if not self._owns(pending):
                self._job.discard(candidate)
                raise _Revoked
            return await asyncio.to_thread(self._job.commit, candidate)

        try:
            # Blocking TensorFlow work: a worker thread, so the consumer keeps heartbeating.
            candidate = await retry_transient(
                lambda: asyncio.to_thread(self._job.build, plan, batch_id), what="the retrain job", stop=self._stop
            )
            # Publishing is idempotent (same content, same version): only this part is retried
            # while the object store is down or another writer holds the registry's lease.
            result = await retry_transient(
                lambda: commit(candidate),
                what="publishing the checkpoint",
                stop=self._stop,
            )
        except (Abandoned, _Revoked):
            raise
        except Exception:
            # The scans stay in the dataset (replayed by later batches); the model stays as it is.
            self._metrics.retrains.labels(outcome="failed").inc()
            log.exception("retrain job of batch %s failed: the current model stays", batch_id)
            return None
        self._metrics.retrains.labels(outcome=result.status).inc()
        self._metrics.duration.observe(time.monotonic() - started)
        self._metrics.current(result.current_version, result.current_threshold)
        self._metrics.errors(result.new_validation_error, result.new_anomaly_error)
        log.info(
            "%s %s (parent %s) in %.1f s: %s; serving %s at threshold %.6g",
            result.status,
            result.version,
            result.parent,
            result.seconds,
            result.reason,
            result.current_version,
            result.current_threshold,
        )
        return result

    async def _deliver(self, updates: list[ModelUpdate], pending: Pending) -> None:
        messages = [Outgoing(self._config.topic_model_updates, MODEL_UPDATE_KEY, u.to_json()) for u in updates]
        if self._pending is not pending:
            log.warning("partitions revoked during the batch: another instance reads it again")
            return
        if await self._delivery.deliver(pending.polled, messages, pending.poisons, retry=True):
            self.updates.extend(updates)
        if self._pending is pending:
            self._pending = Pending(generation=self._delivery.generation)


class ControlMessageError(InvalidMessage):
    """A control-topic message that is not a valid request (poison)."""


def parse_control(record: SourceRecord) -> RollbackRequest:
    return parse_record(record, RollbackRequest, ControlMessageError)


class _Revoked(Exception):  # noqa: N818 (a state, not an error)
    """The batch's partition was revoked while it was being processed."""
