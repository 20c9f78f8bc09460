"""Detection quality on simulated slices: does `anomaly_score` find the defects, and how fast does it train.

Generates >= 500 normal training slices, a few known defects for the threshold, and a test set of
normal slices and >= 30 slices per defect type (low/medium/high severity in turn), trains at 256 px
and prints one JSON line: image AUROC overall, per type and per type at medium severity, for
`anomaly_score` and for the mean reconstruction error; F1/precision/recall at the threshold; pixel
AUROC of the anomaly maps; training time and scoring time per slice.

    .venv/bin/python -m benchmarks.quality            # the full run (about 10 minutes on 2 cores)
    .venv/bin/python -m benchmarks.quality --train 60 --test-normal 20 --per-type 6 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np


def _slices(items: list[tuple[np.ndarray, np.ndarray]], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from model_core.imaging import preprocess

    images = np.stack([preprocess(raw.astype(np.float32), size) for raw, _ in items])
    masks = np.stack(
        [
            np.asarray(Image.fromarray((m > 0).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)) > 0
            for _, m in items
        ]
    )
    return images, masks


@dataclass(frozen=True)
class Bench:
    """The quality bench's slices, preprocessed: what `benchmarks.detector_speed` reuses."""

    train: np.ndarray  # normal training slices
    known: np.ndarray  # known defects (threshold only)
    test_normal: np.ndarray
    test_defect: np.ndarray
    defect_masks: np.ndarray
    labels: list[tuple[str, str]]  # (defect type, severity) of every test defect
    generation_seconds: float


def make_bench(train: int, known_per_type: int, test_normal: int, per_type: int, size: int, seed: int) -> Bench:
    """The bench's simulated slices, drawn in a fixed order from one seeded generator."""
    from producers.simulator import DEFECT_TYPES, SEVERITIES, random_defect_slice, random_normal_slice

    rng = np.random.default_rng(seed)
    started = time.monotonic()
    normal = [random_normal_slice(rng, size) for _ in range(train)]
    known = [random_defect_slice(rng, size, t, SEVERITIES[i % 3]) for t in DEFECT_TYPES for i in range(known_per_type)]
    normal_test = [random_normal_slice(rng, size) for _ in range(test_normal)]
    defect_test: list[tuple[np.ndarray, np.ndarray]] = []
    labels: list[tuple[str, str]] = []
    for defect_type in DEFECT_TYPES:
        for i in range(per_type):
            severity = SEVERITIES[i % 3]
            defect_test.append(random_defect_slice(rng, size, defect_type, severity))
            labels.append((defect_type, severity))
    train_images, _ = _slices(normal, size)
    known_images, _ = _slices(known, size)
    normal_images, _ = _slices(normal_test, size)
    defect_images, defect_masks = _slices(defect_test, size)
    return Bench(
        train_images,
        known_images,
        normal_images,
        defect_images,
        defect_masks,
        labels,
        time.monotonic() - started,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=500, help="normal training slices")
    parser.add_argument("--known-per-type", type=int, default=3, help="known defects per type (threshold only)")
    parser.add_argument("--test-normal", type=int, default=100)
    parser.add_argument("--per-type", type=int, default=30, help="test slices per defect type")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    from model_core.evaluation import auroc, operating_point, pixel_auroc
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.training import TrainingConfig, train_detector

    size = args.image_size
    bench = make_bench(args.train, args.known_per_type, args.test_normal, args.per_type, size, args.seed)
    train_images, known_images = bench.train, bench.known
    normal_images, defect_images, defect_masks = bench.test_normal, bench.test_defect, bench.defect_masks
    labels, generation_s = bench.labels, bench.generation_seconds

    config = TrainingConfig(
        network=NetworkConfig(image_size=size),
        memory=PatchMemoryConfig.for_image_size(size),
        epochs=args.epochs,
        seed=args.seed,
    )
    started = time.monotonic()
    trained = train_detector(list(train_images), list(known_images), config)
    training_s = time.monotonic() - started

    threshold = trained.threshold.threshold
    started = time.monotonic()
    normal_scores = trained.core.scores(normal_images, threshold)
    defect_scores = trained.core.scores(defect_images, threshold)
    per_slice_s = (time.monotonic() - started) / (len(normal_scores) + len(defect_scores))

    neg = np.array([s.anomaly_score for s in normal_scores])
    neg_err = np.array([s.reconstruction_error for s in normal_scores])
    pos = np.array([s.anomaly_score for s in defect_scores])
    pos_err = np.array([s.reconstruction_error for s in defect_scores])

    groups: dict[str, list[int]] = defaultdict(list)
    medium: dict[str, list[int]] = defaultdict(list)
    for i, (kind, grade) in enumerate(labels):
        groups[kind].append(i)
        if grade == "medium":
            medium[kind].append(i)

    def pair(idx: list[int]) -> dict[str, float]:
        return {
            "anomaly_score": round(auroc(neg, pos[idx]), 4),
            "mean_error": round(auroc(neg_err, pos_err[idx]), 4),
        }

    point = operating_point(neg, pos, threshold)
    result: dict[str, Any] = {
        "image_size": size,
        "train_normal": args.train,
        "test_normal": args.test_normal,
        "test_per_type": args.per_type,
        "image_auroc": pair(list(range(len(pos)))),
        "image_auroc_per_type": {t: pair(idx) for t, idx in groups.items()},
        "image_auroc_medium_severity": {t: pair(idx) for t, idx in medium.items()},
        "threshold": round(threshold, 4),
        "threshold_rule": trained.threshold.rule,
        "at_threshold": {k: round(v, 4) for k, v in point.model_dump().items() if k != "threshold"},
        "recall_per_type": {t: round(float((pos[idx] > threshold).mean()), 4) for t, idx in groups.items()},
        "pixel_auroc": round(pixel_auroc([s.error_map for s in defect_scores], list(defect_masks)), 4),
        "training_seconds": round(training_s, 1),
        "epochs_run": len(trained.history),
        "scoring_seconds_per_slice": round(per_slice_s, 4),
        "generation_seconds": round(generation_s, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
