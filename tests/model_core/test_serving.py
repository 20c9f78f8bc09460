import threading
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
