"""Retry with exponential backoff for transient failures (object store or broker unavailable).

Whether an error is transient is its own business: battery-ct errors carry `retriable`, Kafka
errors carry the same flag, and connection-level OS errors are transient too.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from runtime.logs import printable

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_retriable(exc: BaseException) -> bool:
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, ConnectionError | TimeoutError)


class Abandoned(Exception):  # noqa: N818 (a state, not an error)
    """A retry loop gave up because the service is shutting down."""


@dataclass(frozen=True)
class Backoff:
    """Delays of 0.1, 0.2, 0.4 ... capped at `maximum` seconds, with +-`jitter` relative noise."""

    initial: float = 0.1
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event | None = None,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Await `operation()` until it succeeds or fails with a non-transient error (raised as is).

    Transient errors are retried forever (nothing is dead-lettered for an outage); when `stop` is
    set, the loop raises `Abandoned` so the caller can leave without committing.
    """
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = backoff.delay(attempt)
            level = logging.WARNING if attempt in (0, 5) or attempt % 50 == 0 else logging.DEBUG
            log.log(
                level,
                "%s failed (%s: %s); retry %d in %.2f s",
                printable(what),
                type(exc).__name__,
                printable(str(exc)),
                attempt + 1,
                delay,
            )
            attempt += 1
        if stop is None:
            await asyncio.sleep(delay)
            continue
        if stop.is_set():
            raise Abandoned(what)
        try:
            # Wake at once when asked to stop instead of sleeping the whole backoff.
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            continue
        raise Abandoned(what)
