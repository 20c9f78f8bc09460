"""The outbox relay on the real broker: every decision reaches the accepted topic exactly once,
across a crash between the publish and the database's note of it."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

import pytest

from reviews import relay as relay_module
from reviews.database import Database
from reviews.decisions import DecisionRequest, decide
from reviews.materialise import store_batch
from reviews.people import add_user
from reviews.relay import OutboxRelay, pending
from schemas.accepted import AcceptedScan
from schemas.settings import Settings
from tests.helpers import consume_until
from tests.reviews.conftest import verdict_record


def _decided(database: Database, settings: Settings, count: int) -> None:
    database.run(lambda s: add_user(s, "olga", "a long password", "operator"))
    records = [verdict_record(i, anomaly=True) for i in range(count)]
    database.run(lambda s: store_batch(s, "g", records, {}, audit_rate=0))
    normal = DecisionRequest(label="normal")
    for scan in [f"scan-{i}" for i in range(count)]:
        database.run(
            partial(decide, scan_id=scan, request=normal, username="olga", topic_accepted=settings.topic_accepted)
        )


async def test_each_decision_is_published_once(settings: Settings, tmp_path: Path) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'r.db'}")
    _decided(database, settings, 3)
    relay = OutboxRelay(settings, database)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        records = await consume_until(settings, settings.topic_accepted, 3, settle_s=1.0)
    finally:
        stop.set()
        await task
    assert sorted(AcceptedScan.from_json(r.value).scan_id for r in records) == ["scan-0", "scan-1", "scan-2"]
    assert database.run(pending) == []


async def test_a_crash_after_the_publish_and_before_the_note_publishes_nothing_twice(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'r.db'}")
    _decided(database, settings, 2)
    crashed = OutboxRelay(settings, database)
    await crashed.open()

    def crash(*_: object) -> int:
        raise RuntimeError("killed before the database noted the publish")

    monkeypatch.setattr(relay_module, "mark_published", crash)
    with pytest.raises(RuntimeError, match="killed"):
        await crashed.publish_pending()
    await crashed.close()
    monkeypatch.undo()
    assert len(database.run(pending)) == 2  # the database does not know they went out

    restarted = OutboxRelay(settings, database)
    await restarted.open()  # the bookmark in Kafka says they did
    try:
        assert database.run(pending) == []
        assert await restarted.publish_pending() == 0
    finally:
        await restarted.close()
    records = await consume_until(settings, settings.topic_accepted, 2, settle_s=1.0)
    assert len(records) == 2


async def test_a_new_database_does_not_take_an_old_bookmark_for_its_own(settings: Settings, tmp_path: Path) -> None:
    first = Database.open(f"sqlite:///{tmp_path / 'first.db'}")
    _decided(first, settings, 3)
    relay = OutboxRelay(settings, first)
    await relay.open()
    assert await relay.publish_pending() == 3
    await relay.close()

    second = Database.open(f"sqlite:///{tmp_path / 'second.db'}")
    _decided(second, settings, 1)  # its seq 1 is below the first database's bookmark (4)
    relay = OutboxRelay(settings, second)
    await relay.open()
    try:
        assert len(second.run(pending)) == 1
        assert await relay.publish_pending() == 1
    finally:
        await relay.close()
    records = await consume_until(settings, settings.topic_accepted, 4, settle_s=1.0)
    assert len(records) == 4
