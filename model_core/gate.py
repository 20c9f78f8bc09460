"""The promotion gate: a retrained model replaces the current one only if it is not worse.

The validation metric (docs/DETECTION.md): with known defects, the image AUROC of `anomaly_score`
between the normal validation scans and the known-defect set (higher is better). With normal scans
only there is no separation to measure, and anomaly scores of two models are on different scales,
so the mean reconstruction error on the normal validation set is compared (lower is better).
`train_detector` scores the candidate and the current model on the same validation data.

The AUROC may drop by at most `auroc_drop` (absolute), not by a share of itself: known defects mix
easy types with hard ones, so a batch that teaches the memory that pores are normal costs the
pooled AUROC only the pores' share. At 256 px such a batch lowered it from 0.969 to 0.945, inside
a relative 5 % and promoted; a clean batch of the same size raised it (benchmarks/retrain_time.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ValidationMetrics(BaseModel):
    """What a detector achieves on one validation set."""

    model_config = ConfigDict(frozen=True)

    validation_error: float = Field(description="Mean reconstruction error (MSE) of the normal validation scans")
    anomaly_error: float | None = Field(None, description="Mean reconstruction error of the known defects")
    image_auroc: float | None = Field(None, description="AUROC of anomaly_score, normal validation vs defects")
    false_positive_rate: float = Field(description="Normal validation scans over the threshold")
    recall: float | None = Field(None, description="Known defects over the threshold")


class GateDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    promote: bool
    reason: str


def decide(
    candidate: ValidationMetrics, current: ValidationMetrics | None, tolerance: float, auroc_drop: float = 0.01
) -> GateDecision:
    """Promote unless the candidate's image AUROC drops by more than `auroc_drop` or, with no known
    defects, its validation error rises by more than `tolerance` (relative)."""
    if current is None:
        return GateDecision(promote=True, reason="no current model")
    if candidate.image_auroc is not None and current.image_auroc is not None:
        floor = current.image_auroc - auroc_drop
        if candidate.image_auroc < floor:
            return GateDecision(
                promote=False,
                reason=f"image AUROC {candidate.image_auroc:.4f} < {floor:.4f} "
                f"(current {current.image_auroc:.4f}, largest drop {auroc_drop})",
            )
        return GateDecision(
            promote=True, reason=f"image AUROC {candidate.image_auroc:.4f} (current {current.image_auroc:.4f})"
        )
    ceiling = current.validation_error * (1 + tolerance)
    if candidate.validation_error > ceiling:
        return GateDecision(
            promote=False,
            reason=f"validation error {candidate.validation_error:.6f} > {ceiling:.6f} "
            f"(current {current.validation_error:.6f}, tolerance {tolerance})",
        )
    return GateDecision(
        promote=True,
        reason=f"validation error {candidate.validation_error:.6f} (current {current.validation_error:.6f})",
    )
