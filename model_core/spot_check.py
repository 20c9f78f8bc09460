"""A spot check on a handful of real slices: train on the normal ones (plus augmented copies of a
nominal slice), score named probes and keep their error maps.

Real CT data of one cell design comes in few slices; augmented copies of a nominal slice (turned,
mirrored, shifted, other exposure and noise) give the memory of normal patches enough variety.
Used by the demo's real-data section and by `benchmarks/real_data.py`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model_core.augmentation import AugmentationConfig, augment
from model_core.training import TrainingConfig, train_detector

JITTER = AugmentationConfig(max_shift=0.02)


@dataclass(frozen=True)
class ProbeResult:
    image: np.ndarray
    error_map: np.ndarray
    anomaly_score: float
    reconstruction_error: float
    is_anomaly: bool

    def peak(self) -> tuple[int, int]:
        row, col = np.unravel_index(int(np.argmax(self.error_map)), self.error_map.shape)
        return int(row), int(col)

    def peak_offset_from_centre(self) -> float:
        row, col = self.peak()
        size = self.error_map.shape[0]
        return float(np.hypot(row - size / 2, col - size / 2))


@dataclass(frozen=True)
class SpotCheck:
    threshold: float
    threshold_rule: str
    training_slices: int
    training_seconds: float
    probes: dict[str, ProbeResult]


def augmented_copies(image: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [augment(image, JITTER, rng) for _ in range(count)]


def spot_check(
    normal: Sequence[np.ndarray],
    nominal: np.ndarray,
    probes: Mapping[str, np.ndarray],
    config: TrainingConfig,
    *,
    copies: int,
) -> SpotCheck:
    """Train on `normal` plus `copies` augmented copies of `nominal` (preprocessed arrays of
    `config`'s size), with the threshold from normal slices only, and score every probe."""
    training = [*normal, *augmented_copies(nominal, copies, config.seed)]
    started = time.monotonic()
    trained = train_detector(training, None, config)
    seconds = time.monotonic() - started
    threshold = trained.threshold.threshold
    scores = trained.core.scores(np.stack(list(probes.values())), threshold)
    results = {
        name: ProbeResult(
            image=image,
            error_map=score.error_map,
            anomaly_score=float(score.anomaly_score),
            reconstruction_error=float(score.reconstruction_error),
            is_anomaly=bool(score.is_anomaly),
        )
        for (name, image), score in zip(probes.items(), scores, strict=True)
    }
    return SpotCheck(threshold, trained.threshold.rule, len(training), seconds, results)
