"""The ModelUpdates the retrain consumer broadcasts."""

from dataclasses import dataclass

from consumers.retrain.job import JobResult
from consumers.retrain.manifest import NewScan
from schemas.model_updates import ModelUpdate

SHA = "ab" * 32


def scans() -> list[NewScan]:
    return [
        NewScan(scan_id="c1", sha256=SHA, label="normal", source="t/0/1", job_id="j1"),
        NewScan(scan_id="c2", sha256=SHA, label="normal", source="t/0/2"),
        NewScan(scan_id="c1", sha256=SHA, label="normal", source="t/0/3", job_id="j1"),
    ]


def result(status: str = "rejected") -> JobResult:
    return JobResult(
        status=status,  # type: ignore[arg-type]
        version="v2",
        parent="v1",
        current_version="v1" if status == "rejected" else "v2",
        current_threshold=0.5,
        candidate_threshold=0.7,
        new_validation_error=0.01,
        new_anomaly_error=0.04,
        reason="image AUROC fell",
        trained=True,
        seconds=3.0,
    )


@dataclass(frozen=True)
class Dataset:
    n_normal: int = 1
    n_defect: int = 0


@dataclass(frozen=True)
class Current:
    """The serving checkpoint's facts, as `CheckpointMetadata` has them."""

    version: str = "v1"
    parent: str | None = None
    threshold: float = 0.5
    validation_error: float | None = 0.01
    anomaly_error: float | None = None
    dataset: Dataset = Dataset()


def test_a_rejected_batch_announces_the_candidate_and_the_version_that_stays() -> None:
    update = ModelUpdate.of_batch(result("rejected"), scans(), {"normal": 10, "defect": 2})
    assert update.status == "rejected" and update.version == "v2" and update.parent == "v1"
    assert update.current_version == "v1" and update.threshold == 0.5  # the threshold that serves
    assert update.new_validation_error == 0.01 and update.new_anomaly_error == 0.04
    assert update.scan_ids == ["c1", "c2"] and update.job_ids == ["j1"]
    assert update.dataset_size == {"normal": 10, "defect": 2}
    assert ModelUpdate.from_json(update.to_json()) == update


def test_an_unchanged_batch_answers_its_jobs_with_the_current_model() -> None:
    update = ModelUpdate.unchanged(Current(), scans(), {"normal": 1, "defect": 0})
    assert update.status == "promoted" and update.version == update.current_version == "v1"
    assert update.job_ids == ["j1"] and update.reason and "already" in update.reason
