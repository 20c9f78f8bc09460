"""A review database per test, on SQLite and on PostgreSQL (a throwaway server from Debian's package)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reviews.database import Database
from reviews.materialise import ConsumedRecord
from schemas.verdicts import Verdict


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'review.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database.open(url)
    yield db
    db.close()


T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def verdict_record(
    offset: int,
    scan_id: str | None = None,
    *,
    partition: int = 0,
    topic: str = "ct.verdicts",
    anomaly: bool = False,
    minutes: int | None = None,
    **extra: object,
) -> ConsumedRecord:
    """A verdicts-topic record: scan `scan-<offset>` judged `minutes` (default: offset) after T0."""
    verdict = Verdict(
        scan_id=scan_id or f"scan-{offset}",
        image_url=f"s3://scans/{scan_id or f'scan-{offset}'}.png",
        reconstruction_error=0.01,
        anomaly_score=0.9 if anomaly else 0.1,
        is_anomaly=anomaly,
        threshold=0.5,
        model_version="v0001",
        judged_at=T0 + timedelta(minutes=offset if minutes is None else minutes),
    )
    payload = verdict.model_dump(mode="json") | extra
    return ConsumedRecord(topic, partition, offset, json.dumps(payload).encode())
