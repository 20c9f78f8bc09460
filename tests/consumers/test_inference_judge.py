from concurrent.futures import ThreadPoolExecutor
from typing import cast

import numpy as np

from consumers.inference.judge import Judge
from consumers.inference.prepare import Job, PreparedBatch, Ready
from model_core.detector import Detector, ScanScore
from model_core.serving import ModelHolder
from runtime.delivery import Polled
from runtime.records import SourceRecord
from schemas.scans import ScanEvent


class FakeDetector:
    """The model boundary: scores each image by its mean, refuses NaN images."""

    def __init__(self, version: str, image_size: int = 4, threshold: float = 0.5) -> None:
        self.version, self.image_size, self.threshold = version, image_size, threshold
        self.batches: list[int] = []

    def score_batch(self, images: np.ndarray) -> list[ScanScore]:
        if np.isnan(images).any():
            raise ValueError("NaN input")
        self.batches.append(len(images))
        return [ScanScore(float(i.mean()), float(i.mean()), float(i.mean()) > self.threshold, i) for i in images]


def ready(name: str, value: float, size: int = 4) -> Ready:
    event = ScanEvent(scan_id=name, bucket="scans", key=name)
    return Ready(Job(event, SourceRecord("t", 0, 0, None, b"")), np.full((size, size), value, np.float32), 0, 0)


def batch_of(detector: FakeDetector, *items: Ready) -> PreparedBatch:
    return PreparedBatch(Polled(0, []), cast(Detector, detector), list(items), [])


async def test_one_verdict_per_scan_in_one_model_call() -> None:
    detector = FakeDetector("v1")
    with ThreadPoolExecutor(1) as pool:
        judged = await Judge(pool).judge(batch_of(detector, ready("a", 0.1), ready("b", 0.9)))
    assert detector.batches == [2]
    assert [(v.scan_id, v.is_anomaly, v.model_version) for v in judged.verdicts] == [
        ("a", False, "v1"),
        ("b", True, "v1"),
    ]
    assert judged.poisons == []


async def test_a_scan_the_model_cannot_take_is_poison_and_the_rest_is_judged() -> None:
    detector = FakeDetector("v1")
    with ThreadPoolExecutor(1) as pool:
        judged = await Judge(pool).judge(
            batch_of(detector, ready("a", 0.1), ready("bad", float("nan")), ready("c", 0.2))
        )
    assert [v.scan_id for v in judged.verdicts] == ["a", "c"]
    assert [p.scan_id for p in judged.poisons] == ["bad"]


async def test_the_batch_is_judged_by_the_detector_pinned_at_its_poll() -> None:
    """A hot swap between the poll and the model call does not change who judges the batch:
    the detector was pinned when it was polled (and the batch decoded for its input size)."""
    old, new = FakeDetector("v1"), FakeDetector("v2", image_size=6)
    served = ModelHolder(cast(Detector, old))
    batch = batch_of(cast(FakeDetector, served.require()), ready("a", 0.9))
    served.swap(cast(Detector, new))
    with ThreadPoolExecutor(1) as pool:
        judged = await Judge(pool).judge(batch)
    assert [v.model_version for v in judged.verdicts] == ["v1"]
    assert old.batches == [1] and new.batches == []
