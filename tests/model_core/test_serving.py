import threading
import time
from typing import Any, cast

import pytest

from model_core.detector import Detector
from model_core.serving import ModelHolder


def test_holder_swaps_and_returns_the_previous_model() -> None:
    first, second = cast(Detector, object()), cast(Detector, object())
    holder = ModelHolder()
    with pytest.raises(LookupError):
        holder.require()
    assert holder.swap(first) is None
    assert holder.swap(second) is first
    assert holder.current is second


def test_concurrent_swaps_leave_one_of_the_models() -> None:
    models: list[Any] = [object() for _ in range(8)]
    holder = ModelHolder()
    threads = [threading.Thread(target=holder.swap, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert holder.current in models


class SlowSlotHolder(ModelHolder):
    """A holder whose slot takes a while to read, so that a thread switch lands between a swap's
    read of the old model and its write of the new one: without the holder's lock, two swaps in
    that window both return the same previous model and one model is lost."""

    @property
    def _detector(self) -> Detector | None:
        value = cast("Detector | None", self.__dict__["slot"])
        time.sleep(0.0005)
        return value

    @_detector.setter
    def _detector(self, value: Detector | None) -> None:
        self.__dict__["slot"] = value


def test_swaps_racing_with_readers_hand_every_model_over_exactly_once() -> None:
    workers, swaps_each = 6, 15
    holder = SlowSlotHolder()
    start = threading.Barrier(workers + 2)
    replaced: list[list[object | None]] = [[] for _ in range(workers)]
    swapped_in: list[list[object]] = [[object() for _ in range(swaps_each)] for _ in range(workers)]
    seen: list[object | None] = []
    done = threading.Event()

    def swapper(index: int) -> None:
        start.wait()
        for model in swapped_in[index]:
            replaced[index].append(holder.swap(cast(Detector, model)))

    def reader() -> None:
        start.wait()
        while not done.is_set():
            seen.append(holder.current)

    threads = [threading.Thread(target=swapper, args=(i,)) for i in range(workers)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads[:-1]:
        thread.join(timeout=30)
    done.set()
    threads[-1].join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    everything = [model for models in swapped_in for model in models]
    handed_back = [model for models in replaced for model in models]
    # The swaps form one chain: None, then each model replaced exactly once but the last, which serves.
    assert sorted(map(id, [*handed_back, holder.current])) == sorted(map(id, [None, *everything]))
    assert handed_back.count(None) == 1
    known = {id(model) for model in everything} | {id(None)}
    assert seen and all(id(model) in known for model in seen)
