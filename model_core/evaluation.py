"""Quality measures of a detector: image and pixel AUROC, precision/recall/F1 at a threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import rankdata


def auroc(negatives: Sequence[float] | np.ndarray, positives: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    neg = np.asarray(negatives, dtype=np.float64).ravel()
    pos = np.asarray(positives, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError("AUROC needs at least one negative and one positive")
    ranks = rankdata(np.concatenate([neg, pos]))
    u = ranks[neg.size :].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (neg.size * pos.size))


class OperatingPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    threshold: float
    precision: float
    recall: float
    f1: float
    false_positive_rate: float


def operating_point(
    negatives: Sequence[float] | np.ndarray, positives: Sequence[float] | np.ndarray, threshold: float
) -> OperatingPoint:
    """Precision, recall and F1 when `score > threshold` is called an anomaly."""
    neg = np.asarray(negatives, dtype=np.float64)
    pos = np.asarray(positives, dtype=np.float64)
    tp, fp = float((pos > threshold).sum()), float((neg > threshold).sum())
    recall = tp / pos.size if pos.size else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / neg.size if neg.size else 0.0
    return OperatingPoint(threshold=threshold, precision=precision, recall=recall, f1=f1, false_positive_rate=fpr)


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_pixels: int = 2_000_000) -> float:
    """AUROC of anomaly-map values, defect pixels against all others, over many slices.

    Subsampled evenly to `max_pixels` so that hundreds of 256 px slices stay cheap.
    """
    values = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    labels = np.concatenate([(np.asarray(m) > 0).ravel() for m in masks])
    if values.shape != labels.shape:
        raise ValueError("every anomaly map needs a mask of the same shape")
    step = max(1, values.size // max_pixels)
    values, labels = values[::step], labels[::step]
    return auroc(values[~labels], values[labels])
