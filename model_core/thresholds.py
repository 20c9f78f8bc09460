"""The decision threshold, recomputed after every (re)training.

Rules (documented in docs/DETECTION.md):
- normal scans only: the `quantile` (default 0.99) of the normal validation scores, raised by a
  `margin` of the normal scores' spread, since an F1 search with no defects flags everything;
- known defects too: the lowest cut whose false-positive rate on normal validation scans stays
  within `max_fpr` (`fpr`, the default: a line budgets its operators' time for false alarms), or
  the F1-optimal cut between the two score sets (`f1`). F1 depends on how many defects are known
  against how many normal scans are validated: after a retraining the validation split holds a
  dozen normal scans against every known defect, and the F1-optimal cut flagged 45 % of held-out
  normal scans at 256 px.
- Either cut lies in a gap between two scores, and every cut in that gap has the same rates: it
  goes where the normal-only rule would put it, kept inside the gap and no higher than the cut
  itself. A few known defects bound the gap from above, and unseen ones are often weaker: a cut in
  the middle of a wide gap missed 40 % of the defects on the quality bench at no gain in false
  alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ThresholdRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    mode: Literal["f1", "fpr"] = Field(
        "fpr",
        description="How known defects set the cut: 'fpr' (recall at a false-alarm budget) or 'f1' (F1-optimal)",
    )
    quantile: float = Field(0.99, gt=0, lt=1, description="Quantile of normal scores (normal-only rule)")
    margin: float = Field(0.5, ge=0, description="Normal-only: add this many interquartile ranges of normal scores")
    max_fpr: float = Field(0.01, ge=0, lt=1, description="fpr mode: largest false-positive rate on normal scans")


class ThresholdDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    threshold: float
    rule: str = Field(description="Which rule set the threshold, in words")
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    false_positive_rate: float


def _rates(normal: np.ndarray, defect: np.ndarray, cut: float) -> tuple[float, float, float, float]:
    true_pos = float((defect > cut).sum())
    false_pos = float((normal > cut).sum())
    recall = true_pos / defect.size
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, false_pos / normal.size


def calibrate(
    normal_scores: Sequence[float] | np.ndarray,
    defect_scores: Sequence[float] | np.ndarray | None,
    rule: ThresholdRule | None = None,
) -> ThresholdDecision:
    """A threshold from normal validation scores and, when any are known, defect scores."""
    rule = rule or ThresholdRule()
    normal = np.asarray(normal_scores, dtype=np.float64)
    if normal.size == 0:
        raise ValueError("a threshold needs at least one normal validation score")
    defect = np.asarray(defect_scores if defect_scores is not None else [], dtype=np.float64)
    normal_cut = _normal_only_cut(normal, rule)
    if defect.size == 0:
        return ThresholdDecision(
            threshold=normal_cut,
            rule=f"normal-only: quantile {rule.quantile} of {normal.size} normal scores + {rule.margin} IQR",
            false_positive_rate=float((normal > normal_cut).mean()),
        )
    # Candidate cuts: midpoints between consecutive distinct scores of both sets, plus the ends.
    values = np.unique(np.concatenate([normal, defect]))
    cuts = np.concatenate([[values[0] - 1e-9], (values[:-1] + values[1:]) / 2, [values[-1]]])
    if rule.mode == "fpr":
        allowed = [c for c in cuts if (normal > c).mean() <= rule.max_fpr]
        cut = float(min(allowed))
        text = f"recall-optimal at false-positive rate <= {rule.max_fpr} ({normal.size} normal, {defect.size} defect)"
    else:
        scored = [(_rates(normal, defect, c)[2], c) for c in cuts]
        best = max(f for f, _ in scored)
        best_cuts = [c for f, c in scored if f == best]
        cut = float((min(best_cuts) + max(best_cuts)) / 2)
        text = f"F1-optimal ({normal.size} normal, {defect.size} defect validation scores)"
    # Every cut from the highest score at or below this one up to it has the same rates: lean
    # towards the normal scores (see the module's docstring).
    below = values[values <= cut]
    floor = float(below.max()) if below.size else cut
    cut = min(cut, max(normal_cut, floor))
    precision, recall, f1, fpr = _rates(normal, defect, cut)
    return ThresholdDecision(
        threshold=cut, rule=text, precision=precision, recall=recall, f1=f1, false_positive_rate=fpr
    )


def _normal_only_cut(normal: np.ndarray, rule: ThresholdRule) -> float:
    q25, q75 = np.quantile(normal, [0.25, 0.75])
    return float(np.quantile(normal, rule.quantile) + rule.margin * (q75 - q25))
