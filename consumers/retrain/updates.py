"""The ModelUpdate messages the retrain consumer broadcasts (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from consumers.retrain.job import JobResult
from consumers.retrain.manifest import NewScan
from schemas.model_updates import ModelUpdate


def _ids(scans: Sequence[NewScan]) -> tuple[list[str], list[str]]:
    scan_ids = list(dict.fromkeys(s.scan_id for s in scans))
    job_ids = list(dict.fromkeys(s.job_id for s in scans if s.job_id))
    return scan_ids, job_ids


def batch_update(result: JobResult, scans: Sequence[NewScan], dataset_size: dict[str, int]) -> ModelUpdate:
    """What a finished batch decided: the candidate's errors, the threshold that serves now."""
    scan_ids, job_ids = _ids(scans)
    return ModelUpdate(
        status=result.status,
        version=result.version,
        parent=result.parent,
        current_version=result.current_version,
        threshold=result.current_threshold,
        new_validation_error=result.new_validation_error,
        new_anomaly_error=result.new_anomaly_error,
        dataset_size=dataset_size,
        scan_ids=scan_ids,
        job_ids=job_ids,
        reason=result.reason,
    )


def unchanged_update(
    current_version: str,
    threshold: float,
    validation_error: float | None,
    anomaly_error: float | None,
    scans: Sequence[NewScan],
    dataset_size: dict[str, int],
) -> ModelUpdate:
    """A batch of scans the dataset already held: nothing was trained, the current model stands.

    Sent only when somebody waits for these scans (job ids), so a facade request still gets its answer.
    """
    scan_ids, job_ids = _ids(scans)
    return ModelUpdate(
        status="promoted",
        version=current_version,
        parent=None,
        current_version=current_version,
        threshold=threshold,
        new_validation_error=validation_error,
        new_anomaly_error=anomaly_error,
        dataset_size=dataset_size,
        scan_ids=scan_ids,
        job_ids=job_ids,
        reason="the dataset already held these scans: nothing to retrain",
    )
