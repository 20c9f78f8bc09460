"""Verdicts into cells: one transaction per batch stores the verdicts read, updates each cell and
moves the partitions' next offsets, compare-and-set, so a batch lands exactly once even when a
crashed or rebalanced-away consumer tries to store it too."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from reviews.tables import Cell, ConsumerOffset, RejectedVerdict, VerdictRecord
from schemas.base import summarise, utc_now
from schemas.verdicts import Verdict

REJECTED_BYTES_KEPT = 64 * 1024


class ReviewedVerdict(Verdict):
    """A verdict as the review station reads it: what later verdicts carry besides today's fields
    (findings, an `unusable` status with its reasons) is taken where present."""

    status: str = Field("judged", max_length=16, description="judged | unusable")
    findings: list[dict[str, Any]] | None = None
    reasons: list[str] | None = Field(None, description="unusable reason codes")


def measurement_rows(verdict: Verdict) -> dict[str, Any] | None:
    """The cell page's measurements: each measured value with its recipe check (min, max, nominal,
    `ok`, and why a check could not be made) when the verdict has one."""
    if verdict.measurements is None:
        return None
    checks = {c.name: c for c in verdict.conformance.checks} if verdict.conformance is not None else {}
    rows: dict[str, Any] = {}
    for name, measured in verdict.measurements.items():
        row = measured.model_dump(mode="json", exclude_none=True)
        check = checks.get(name)
        if check is not None:
            row |= {"nominal": check.nominal, "min": check.min, "max": check.max, "ok": check.passed}
            if check.reason:
                row["check"] = check.reason
        rows[name] = row
    return rows


@dataclass(frozen=True)
class ConsumedRecord:
    """One record of the verdicts topic: where it was and what it held."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


class OffsetConflict(RuntimeError):  # noqa: N818 (an expected race, handled by reading again)
    """The database moved past where this consumer thinks it is: someone else stored the batch."""


PartitionKey = tuple[str, int]


def audited(scan_id: str, rate: float) -> bool:
    """Whether a passed cell is sampled for audit: a stable pick by scan id, the same in every replica."""
    digest = hashlib.sha256(scan_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def queue_reason(verdict: ReviewedVerdict, audit_rate: float) -> str | None:
    if verdict.status == "unusable":
        return "unusable"
    if verdict.is_anomaly:
        return "anomaly"
    if verdict.conforms is False:
        return "out_of_tolerance"
    return "audit" if audited(verdict.scan_id, audit_rate) else None


def stored_offsets(session: Session, group_id: str, partitions: Iterable[PartitionKey]) -> dict[PartitionKey, int]:
    """The next offset to read of each of `partitions` that the database has one for."""
    wanted = set(partitions)
    rows = session.scalars(select(ConsumerOffset).where(ConsumerOffset.group_id == group_id)).all()
    return {(r.topic, r.partition): r.next_offset for r in rows if (r.topic, r.partition) in wanted}


def parse(record: ConsumedRecord) -> ReviewedVerdict | str:
    """The verdict of `record`, or why it is not one."""
    if record.value is None:
        return "empty record (no value)"
    try:
        return ReviewedVerdict.from_json(record.value)
    except ValidationError as exc:
        return f"invalid verdict: {summarise(exc, whole='verdict')}"


def store_batch(
    session: Session,
    group_id: str,
    records: Sequence[ConsumedRecord],
    expected: dict[PartitionKey, int | None],
    *,
    audit_rate: float,
) -> dict[PartitionKey, int]:
    """Store `records` and move each partition's next offset past them; returns the new offsets.

    `expected`: where this consumer started each partition's batch (None: nothing stored yet).
    Raises OffsetConflict when the database says otherwise; the caller's transaction then rolls
    back and the consumer reads from the stored offsets again.
    """
    moved = _move_offsets(session, group_id, records, expected)
    now = utc_now()
    for record in records:
        verdict = parse(record)
        if isinstance(verdict, str):
            value = record.value[:REJECTED_BYTES_KEPT] if record.value is not None else None
            session.add(
                RejectedVerdict(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    reason=verdict,
                    value=value,
                    rejected_at=now,
                )
            )
            continue
        session.add(_verdict_record(record, verdict))
        _update_cell(session, verdict, audit_rate)
    return moved


def _move_offsets(
    session: Session,
    group_id: str,
    records: Sequence[ConsumedRecord],
    expected: dict[PartitionKey, int | None],
) -> dict[PartitionKey, int]:
    ends: dict[PartitionKey, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        ends[key] = max(ends.get(key, -1), r.offset + 1)
    for (topic, partition), end in ends.items():
        row = session.get(ConsumerOffset, (group_id, topic, partition), with_for_update=True)
        want = expected.get((topic, partition))
        have = None if row is None else row.next_offset
        if have != want:
            raise OffsetConflict(f"{topic}/{partition}: the database is at {have}, this batch started at {want}")
        if row is None:
            session.add(ConsumerOffset(group_id=group_id, topic=topic, partition=partition, next_offset=end))
        else:
            row.next_offset = end
    session.flush()  # a concurrent first insert of the same partition fails here, not at commit
    return ends


def _verdict_record(record: ConsumedRecord, verdict: ReviewedVerdict) -> VerdictRecord:
    return VerdictRecord(
        scan_id=verdict.scan_id,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        model_version=verdict.model_version,
        is_anomaly=verdict.is_anomaly,
        anomaly_score=verdict.anomaly_score,
        threshold=verdict.threshold,
        judged_at=aware(verdict.judged_at),
        payload=verdict.model_dump(mode="json"),
    )


def _update_cell(session: Session, verdict: ReviewedVerdict, audit_rate: float) -> None:
    cell = session.get(Cell, verdict.scan_id)
    if cell is None:
        cell = Cell(scan_id=verdict.scan_id, verdicts=0, decision_id=None, decided_label=None)
        session.add(cell)
    cell.verdicts = (cell.verdicts or 0) + 1
    if cell.judged_at is not None and _newer(cell.judged_at, verdict.judged_at):
        return  # an older verdict read late: history only, the cell shows the newest
    reason = queue_reason(verdict, audit_rate)
    cell.recipe = verdict.recipe
    cell.image_url = verdict.image_url
    cell.heatmap_url = verdict.heatmap_url
    cell.model_version = verdict.model_version
    cell.status = verdict.status
    cell.is_anomaly = verdict.is_anomaly
    cell.anomaly_score = verdict.anomaly_score
    cell.threshold = verdict.threshold
    cell.reconstruction_error = verdict.reconstruction_error
    cell.conforms = verdict.conforms
    cell.findings = verdict.findings
    cell.measurements = measurement_rows(verdict)
    failed = list(verdict.conformance.failed) if verdict.conformance is not None else []
    cell.reasons = verdict.reasons if verdict.status == "unusable" else (failed or verdict.reasons)
    cell.judged_at = aware(verdict.judged_at)
    cell.queue_reason = reason
    cell.in_queue = reason is not None and cell.decision_id is None


def _newer(stored: datetime, incoming: datetime) -> bool:
    return stored > aware(incoming)


def aware(moment: datetime) -> datetime:
    """A verdict's time as aware UTC (a writer that left out the zone meant UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
