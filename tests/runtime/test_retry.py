import asyncio

import pytest

from runtime.retry import Abandoned, Backoff, is_retriable, retry_transient

FAST = Backoff(initial=0.001, maximum=0.002)


class FlakyError(Exception):
    def __init__(self, retriable: bool) -> None:
        super().__init__("flaky")
        self.retriable = retriable


def test_retriable_flag_wins_and_connection_errors_are_transient() -> None:
    assert is_retriable(FlakyError(True))
    assert not is_retriable(FlakyError(False))
    assert is_retriable(ConnectionRefusedError())
    assert not is_retriable(ValueError("bad"))


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


async def test_transient_failures_are_retried_until_success() -> None:
    calls = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise FlakyError(True)
        return "done"

    seen: list[BaseException] = []
    assert await retry_transient(operation, what="test", backoff=FAST, on_retry=seen.append) == "done"
    assert len(calls) == 4
    assert len(seen) == 3


async def test_poison_is_raised_at_once() -> None:
    calls = []

    async def operation() -> None:
        calls.append(1)
        raise FlakyError(False)

    with pytest.raises(FlakyError):
        await retry_transient(operation, what="test", backoff=FAST)
    assert len(calls) == 1


async def test_stop_abandons_the_retry_loop() -> None:
    stop = asyncio.Event()

    async def operation() -> None:
        stop.set()
        raise FlakyError(True)

    with pytest.raises(Abandoned):
        await retry_transient(operation, what="test", stop=stop, backoff=Backoff(initial=30, maximum=30))
