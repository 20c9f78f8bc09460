"""A memory budget for decoding images, by pixels, shared by the facade and the consumers.

A 65 KB PNG can declare 8192 x 8192 pixels and cost half a gigabyte once decoded to float32, so
what bounds a process's memory is the sum of the pixels being decoded at once, not the number of
requests. Callers read the size from the header first (`model_core.imaging.declared_pixels`) and
decode inside `async with budget.reserve(pixels):`, which waits while that sum would exceed the
budget.

The order is strictly first come, first served: a small request never passes a large one that
waits ahead of it. Letting small requests through would starve a large-but-legal slice for as
long as small ones keep coming; in FIFO order every request waits only for those that came before
it, and a flood of large images costs a small request behind it at most the large ones ahead of
it; a service can also bound the queue itself with `max_waiting` (`DecodeBudgetFull` at once,
for the facade a 503 with Retry-After) instead of holding every connection open.

A request larger than the whole budget is charged the whole budget: it waits until nothing else is
in flight and then decodes alone, so it never deadlocks (the pixel cap of `decode_image` is what
refuses images that are too large to decode at all). One event loop only; not thread-safe.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class DecodeBudgetFull(Exception):  # noqa: N818 (a state of the process, answered 503)
    """Too many decodes are already waiting; the caller should refuse the request and let it retry."""

    retriable = True


class DecodeBudget:
    """At most `max_pixels_in_flight` pixels decoding at once, granted in arrival order."""

    def __init__(self, max_pixels_in_flight: int, *, max_waiting: int | None = None) -> None:
        if max_pixels_in_flight < 1:
            raise ValueError(f"max_pixels_in_flight must be positive, got {max_pixels_in_flight}")
        if max_waiting is not None and max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.capacity = max_pixels_in_flight
        self.max_waiting = max_waiting
        self._in_flight = 0
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def in_flight(self) -> int:
        """Pixels reserved now (an oversize request counts as the whole budget)."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Requests queued for their turn."""
        return sum(1 for future, _ in self._waiters if not future.done())

    @asynccontextmanager
    async def reserve(self, pixels: int) -> AsyncIterator[None]:
        """Hold `pixels` of the budget for the body of the `async with`; released however it ends
        (exception or cancellation included). Raises `DecodeBudgetFull` at once when `max_waiting`
        requests already wait."""
        if pixels < 0:
            raise ValueError(f"pixels must be >= 0, got {pixels}")
        cost = min(pixels, self.capacity)
        await self._acquire(cost)
        try:
            yield
        finally:
            self._release(cost)

    async def _acquire(self, cost: int) -> None:
        if not self._waiters and self._in_flight + cost <= self.capacity:
            self._in_flight += cost
            return
        if self.max_waiting is not None and self.waiting >= self.max_waiting:
            raise DecodeBudgetFull(
                f"{self.waiting} decodes already wait for {self.capacity} pixels of decode budget "
                f"({self._in_flight} in flight)"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (future, cost)
        self._waiters.append(entry)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._release(cost)  # granted in the same turn as the cancellation: hand it on
            else:
                with suppress(ValueError):
                    self._waiters.remove(entry)
                self._grant()  # the head may have left: whoever is next may fit now
            raise

    def _release(self, cost: int) -> None:
        self._in_flight -= cost
        self._grant()

    def _grant(self) -> None:
        """Hand the budget to waiters in order, for as long as the next one fits."""
        while self._waiters:
            future, cost = self._waiters[0]
            if future.done():  # cancelled while queued
                self._waiters.popleft()
                continue
            if self._in_flight + cost > self.capacity:
                return
            self._waiters.popleft()
            self._in_flight += cost
            future.set_result(None)


@dataclass(frozen=True)
class Lane:
    """One queue of decodes: its budget and the threads it decodes in."""

    budget: DecodeBudget
    executor: Executor


@dataclass(frozen=True)
class DecodeLanes:
    """Two lanes, so that a flood of large images cannot hold up ordinary ones: images of at most
    `small_pixels` queue in their own lane (own budget, own thread), everything else in the large
    lane. Each lane is first come, first served, so neither starves; the process's decoding memory
    is bounded by the two budgets together."""

    small: Lane
    large: Lane
    small_pixels: int

    def lane_for(self, pixels: int) -> Lane:
        return self.small if pixels <= self.small_pixels else self.large


async def decode_within(lanes: DecodeLanes | Lane, decode: Callable[[bytes, int], T], data: bytes, size: int) -> T:
    """`decode(data, size)` in its lane's threads, holding the pixels the header declares in the
    lane's budget.

    The header is read first (cheap, no decoding): a non-image fails here with the decoder's error.
    """
    from model_core.imaging import declared_pixels

    pixels = declared_pixels(data)
    lane = lanes.lane_for(pixels) if isinstance(lanes, DecodeLanes) else lanes
    async with lane.budget.reserve(pixels):
        return await asyncio.get_running_loop().run_in_executor(lane.executor, decode, data, size)
