"""The review station's side of the facade's lifecycle: the review database, opened in a worker
thread at start (and again in the background while it cannot be reached), and the outbox relay
that publishes its decisions, stopped and awaited at shutdown.

A database that cannot be opened leaves the rest of the facade serving: the /review pages say why
(503) until it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from runtime.retry import Backoff
from schemas.settings import Settings

if TYPE_CHECKING:
    from reviews.database import Database

log = logging.getLogger(__name__)

FIRST_OPEN_WAIT_S = 10.0  # start waits this long for the database; past it, pages are 503 until it opens
RELAY_STOP_S = 30.0


class Relay(Protocol):
    """What the station needs of `reviews.relay.OutboxRelay` (unit tests pass a small fake)."""

    def wake(self) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    async def close(self) -> None: ...


RelayFactory = Callable[[Settings, "Database"], Relay]


class ReviewStation:
    def __init__(self, settings: Settings, *, relay_factory: RelayFactory | None = None) -> None:
        self._settings = settings
        self._relay_factory = relay_factory if settings.review_relay else None
        self.database: Database | None = None
        self.problem = "the review database is being opened"
        self.relay: Relay | None = None
        self._attempted = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """A decision was stored: the relay publishes it now rather than at its next check."""
        if self.relay is not None:
            self.relay.wake()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ReviewStation]:
        self._tasks.append(asyncio.create_task(self._open(), name="review-database"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), FIRST_OPEN_WAIT_S)
        try:
            yield self
        finally:
            await self._shutdown()

    async def _open(self) -> None:
        from reviews.database import Database, DatabaseUnavailable

        url = self._settings.review_database_url.get_secret_value()
        backoff = Backoff(initial=1.0, maximum=30.0)
        attempt = 0
        while self.database is None:
            try:
                self.database = await asyncio.to_thread(Database.open, url)
            except DatabaseUnavailable as exc:  # its message names the database without the password
                self.problem = f"the review database cannot be reached: {exc}"
                log.warning("%s (retrying)", self.problem)
                self._attempted.set()
                await asyncio.sleep(backoff.delay(attempt))
                attempt += 1
                continue
            except Exception as exc:
                # Other errors (a malformed URL) may quote the URL, password and all: only the type is told.
                self.problem = f"the review database cannot be opened ({type(exc).__name__}); see the facade's log"
                log.error("review database not opened: %s; check BATTERY_CT_REVIEW_DATABASE_URL", type(exc).__name__)
                self._attempted.set()
                return
        self._attempted.set()
        log.info("review database open (%s)", self.database.backend)
        if self._relay_factory is not None:
            self.relay = self._relay_factory(self._settings, self.database)
            self._tasks.append(asyncio.create_task(self._publish(self.relay), name="review-outbox-relay"))

    async def _publish(self, relay: Relay) -> None:
        """The relay retries Kafka itself; anything else that ends it (the database gone away) is
        logged and the relay started again, so decisions are never left unpublished for good."""
        backoff = Backoff(initial=1.0, maximum=30.0)
        attempt = 0
        while not self._stop.is_set():
            try:
                await relay.run(self._stop)
            except Exception:
                log.exception("outbox relay stopped; starting it again")
                await relay.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff.delay(attempt))
                attempt += 1

    async def _shutdown(self) -> None:
        self._stop.set()
        opening, *relaying = self._tasks
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        for task in relaying:
            try:
                await asyncio.wait_for(task, RELAY_STOP_S)
            except TimeoutError:
                log.warning("outbox relay did not stop within %.0f s; cancelled", RELAY_STOP_S)
        if self.database is not None:
            await asyncio.to_thread(self.database.close)
