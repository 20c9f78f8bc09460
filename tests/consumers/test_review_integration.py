"""The review consumer on the real broker: verdicts into the review database exactly once, through
restarts, records that are not verdicts, and a kill -9 in mid-stream (PostgreSQL, as in the stack)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from consumers.review.service import ReviewService
from reviews.database import Database
from reviews.tables import Cell, ConsumerOffset, RejectedVerdict, VerdictRecord
from schemas.settings import Settings
from tests.helpers import env_of, produce_messages
from tests.reviews.conftest import verdict_record

REPO = Path(__file__).resolve().parents[2]


def _count(database: Database, table: type) -> int:
    return int(database.run(lambda s: s.scalar(select(func.count()).select_from(table))) or 0)


async def _until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Return once `condition()` holds; the database has no change feed to await, so it is asked."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(condition):  # noqa: ASYNC110 (a database, not an event)
            await asyncio.sleep(0.05)


async def _produce_verdicts(settings: Settings, first: int, count: int) -> None:
    messages = []
    for i in range(first, first + count):
        record = verdict_record(i, anomaly=i % 7 == 0)
        messages.append((json.loads(record.value or b"{}")["scan_id"].encode(), record.value or b""))
    await produce_messages(settings, settings.topic_verdicts, messages)


async def test_verdicts_and_rejects_land_once_and_a_restart_goes_on_from_the_database(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"metrics_port": 0, "review_audit_rate": 0.0})
    await _produce_verdicts(settings, 0, 40)
    await produce_messages(settings, settings.topic_verdicts, [(b"junk", b"{not a verdict")])
    database = Database.open(settings.review_database_url.get_secret_value())

    async def serve_until(verdicts: int, rejected: int) -> None:
        service = ReviewService(settings)
        task = asyncio.create_task(service.run())
        try:
            await _until(
                lambda: _count(database, VerdictRecord) >= verdicts and _count(database, RejectedVerdict) >= rejected
            )
        finally:
            service.stop.set()
            await task

    await serve_until(40, 1)
    await _produce_verdicts(settings, 40, 10)
    await serve_until(50, 1)
    assert _count(database, VerdictRecord) == 50 and _count(database, Cell) == 50
    assert _count(database, RejectedVerdict) == 1
    stored = database.run(lambda s: s.scalar(select(func.sum(ConsumerOffset.next_offset))))
    assert stored == 51  # every record of every partition, once
    flagged = database.run(lambda s: s.scalar(select(func.count()).select_from(Cell).where(Cell.in_queue)))
    assert flagged == len([i for i in range(50) if i % 7 == 0])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.slow
async def test_kill_9_in_mid_stream_and_a_restart_store_every_verdict_exactly_once(
    settings: Settings, postgres_url: str, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    total = 3000
    settings = settings.model_copy(update={"metrics_port": 0, "review_database_url": SecretStr(postgres_url)})
    await _produce_verdicts(settings, 0, total)
    database = Database.open(postgres_url)
    log = tmp_path / "review.log"

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "consumers.review"],
            cwd=REPO,
            env=env_of(settings),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    first = start()
    await _until(lambda: _count(database, VerdictRecord) > 0, timeout_s=90)
    first.kill()  # SIGKILL: no shutdown, a batch may be half-stored (its transaction is rolled back)
    first.wait(timeout=30)
    at_kill = _count(database, VerdictRecord)
    assert 0 < at_kill < total, f"the kill came too late to be in mid-stream ({at_kill} of {total})"

    second = start()
    await _until(lambda: _count(database, VerdictRecord) >= total, timeout_s=120)
    second.terminate()
    assert second.wait(timeout=60) == 0
    assert _count(database, VerdictRecord) == total
    assert _count(database, Cell) == total
    offsets = database.run(lambda s: s.scalar(select(func.count(func.distinct(VerdictRecord.offset)))))
    assert offsets is not None and offsets <= total
    assert database.run(lambda s: s.scalar(select(func.sum(ConsumerOffset.next_offset)))) == total
