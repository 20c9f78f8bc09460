import asyncio

import pytest

from runtime.decode_budget import DecodeBudget, DecodeBudgetFull


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Tracker:
    """Decodes that record how many pixels and which of them were in flight together."""

    def __init__(self, budget: DecodeBudget) -> None:
        self.budget = budget
        self.order: list[str] = []
        self.peak = 0
        self.running: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}

    async def decode(self, name: str, pixels: int) -> None:
        gate = self.gates.setdefault(name, asyncio.Event())
        async with self.budget.reserve(pixels):
            self.order.append(name)
            self.running.add(name)
            self.peak = max(self.peak, self.budget.in_flight)
            await gate.wait()
            self.running.discard(name)

    def finish(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


async def test_the_sum_of_reservations_never_exceeds_the_budget() -> None:
    budget = DecodeBudget(100)
    tracker = Tracker(budget)
    sizes = [30, 50, 20, 60, 10, 40, 70, 5]

    async def decode(i: int, pixels: int) -> None:
        tracker.finish(str(i))
        async with budget.reserve(pixels):
            tracker.peak = max(tracker.peak, budget.in_flight)
            await asyncio.sleep(0.001 * (i % 3))

    await asyncio.gather(*(decode(i, p) for i, p in enumerate(sizes * 5)))
    assert 0 < tracker.peak <= 100
    assert budget.in_flight == 0 and budget.waiting == 0


async def test_waits_while_full_and_runs_when_released() -> None:
    budget = DecodeBudget(100)
    tracker = Tracker(budget)
    first = asyncio.create_task(tracker.decode("a", 70))
    second = asyncio.create_task(tracker.decode("b", 40))
    await settle()
    assert tracker.running == {"a"} and budget.waiting == 1
    tracker.finish("a")
    await settle()
    assert tracker.running == {"b"} and budget.in_flight == 40
    tracker.finish("b")
    await asyncio.gather(first, second)
    assert budget.in_flight == 0


async def test_released_on_exception_and_on_cancellation() -> None:
    budget = DecodeBudget(100)
    with pytest.raises(RuntimeError):
        async with budget.reserve(80):
            raise RuntimeError("decoder failed")
    assert budget.in_flight == 0

    tracker = Tracker(budget)
    holder = asyncio.create_task(tracker.decode("holder", 80))
    queued = asyncio.create_task(tracker.decode("queued", 80))  # waits behind the holder
    await settle()
    queued.cancel()  # cancelled while waiting: it leaves the queue, it never held anything
    holder.cancel()  # cancelled while holding: its pixels come back
    await asyncio.gather(holder, queued, return_exceptions=True)
    assert budget.in_flight == 0 and budget.waiting == 0
    async with budget.reserve(100):
        assert budget.in_flight == 100


async def test_a_cancelled_head_of_the_queue_lets_the_next_one_in() -> None:
    budget = DecodeBudget(100)
    tracker = Tracker(budget)
    running = asyncio.create_task(tracker.decode("running", 60))
    big = asyncio.create_task(tracker.decode("big", 90))
    small = asyncio.create_task(tracker.decode("small", 30))
    await settle()
    assert tracker.running == {"running"}
    big.cancel()
    await settle()
    assert tracker.running == {"running", "small"}  # it fits next to the running one now
    tracker.finish("running")
    tracker.finish("small")
    await asyncio.gather(running, small)
    with pytest.raises(asyncio.CancelledError):
        await big
    assert budget.in_flight == 0


async def test_a_request_larger_than_the_budget_runs_alone_and_never_deadlocks() -> None:
    budget = DecodeBudget(100)
    tracker = Tracker(budget)
    small = asyncio.create_task(tracker.decode("small", 10))
    await settle()
    huge = asyncio.create_task(tracker.decode("huge", 10_000))
    after = asyncio.create_task(tracker.decode("after", 1))
    await settle()
    assert tracker.running == {"small"}  # the huge one waits for the budget to be empty
    tracker.finish("small")
    await settle()
    assert tracker.running == {"huge"} and budget.in_flight == 100  # alone, charged the whole budget
    tracker.finish("huge")
    tracker.finish("after")
    await asyncio.wait_for(asyncio.gather(small, huge, after), timeout=5)
    assert tracker.order == ["small", "huge", "after"]


async def test_first_come_first_served_small_requests_do_not_pass_a_waiting_large_one() -> None:
    budget = DecodeBudget(100)
    tracker = Tracker(budget)
    names = ["L1", "L2", "s1", "L3", "s2", "s3"]
    sizes = {"L1": 90, "L2": 90, "L3": 90, "s1": 5, "s2": 5, "s3": 5}
    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(tracker.decode(name, sizes[name])))
        await settle()
    assert tracker.running == {"L1"}  # s1 would fit beside L1 but L2 came first
    for name in names:
        tracker.finish(name)
        await settle()
    await asyncio.gather(*tasks)
    assert tracker.order == names


async def test_a_flood_of_large_images_delays_a_small_one_only_by_those_ahead_of_it() -> None:
    budget = DecodeBudget(100)
    started: list[str] = []

    async def decode(name: str, pixels: int) -> None:
        async with budget.reserve(pixels):
            started.append(name)
            await asyncio.sleep(0.001)

    flood = [asyncio.create_task(decode(f"L{i}", 100)) for i in range(5)]
    await settle()
    small = asyncio.create_task(decode("small", 1))
    flood += [asyncio.create_task(decode(f"L{i}", 100)) for i in range(5, 50)]
    await asyncio.gather(small, *flood)
    assert started.index("small") == 5


async def test_max_waiting_refuses_at_once_instead_of_queueing() -> None:
    budget = DecodeBudget(100, max_waiting=1)
    tracker = Tracker(budget)
    holder = asyncio.create_task(tracker.decode("holder", 100))
    queued = asyncio.create_task(tracker.decode("queued", 50))
    await settle()
    with pytest.raises(DecodeBudgetFull) as caught:
        async with budget.reserve(1):
            pass
    assert caught.value.retriable is True
    tracker.finish("holder")
    tracker.finish("queued")
    await asyncio.gather(holder, queued)
    async with budget.reserve(1):  # nothing waits: no refusal
        assert budget.waiting == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        DecodeBudget(0)
    with pytest.raises(ValueError):
        DecodeBudget(10, max_waiting=-1)


async def test_negative_pixels_are_refused() -> None:
    with pytest.raises(ValueError):
        async with DecodeBudget(10).reserve(-1):
            pass


async def test_cancelled_in_the_turn_it_was_granted_hands_the_pixels_on() -> None:
    budget = DecodeBudget(100)
    tracker = Tracker(budget)
    holding = budget.reserve(100)
    await holding.__aenter__()
    granted = asyncio.create_task(tracker.decode("granted", 100))
    last = asyncio.create_task(tracker.decode("last", 100))
    await settle()
    await holding.__aexit__(None, None, None)  # grants "granted" without yielding: it has not run yet
    granted.cancel()
    await settle()
    assert tracker.running == {"last"} and budget.in_flight == 100
    tracker.finish("last")
    await last
    assert granted.cancelled() and budget.in_flight == 0 and "granted" not in tracker.order


async def test_small_images_have_their_own_lane_so_a_flood_of_large_ones_does_not_hold_them_up() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from runtime.decode_budget import DecodeLanes, Lane

    with ThreadPoolExecutor(1) as small_pool, ThreadPoolExecutor(1) as large_pool:
        lanes = DecodeLanes(Lane(DecodeBudget(10), small_pool), Lane(DecodeBudget(100), large_pool), small_pixels=10)
        assert lanes.lane_for(10).executor is small_pool and lanes.lane_for(11).executor is large_pool
        async with lanes.large.budget.reserve(100):  # the large lane is full
            async with asyncio.timeout(1):
                async with lanes.lane_for(4).budget.reserve(4):  # a small image is not queued behind it
                    assert lanes.small.budget.in_flight == 4
