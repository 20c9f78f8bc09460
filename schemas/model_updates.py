"""Messages of the model-updates topic: what the retrain consumer decided about a model version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, Protocol

from pydantic import Field

from schemas.base import Message, utc_now

UpdateStatus = Literal["promoted", "rejected", "rolled_back"]

# Model updates share one key so that a compacted topic keeps the latest decision.
MODEL_UPDATE_KEY = b"model"


class ModelUpdate(Message):
    status: UpdateStatus
    version: str = Field(max_length=64, description="The version this update is about")
    parent: str | None = Field(None, max_length=64)
    current_version: str = Field(max_length=64, description="The version serving after this update")
    threshold: float = Field(description="Threshold of current_version")
    new_validation_error: float | None = Field(None, description="Mean error on the normal validation set")
    new_anomaly_error: float | None = Field(None, description="Mean error on the known-defect set")
    dataset_size: dict[str, int] = Field(default_factory=dict, description="Scans by label")
    scan_ids: list[str] = Field(default_factory=list, max_length=100_000)
    job_ids: list[str] = Field(default_factory=list, max_length=100_000)
    reason: str | None = Field(None, max_length=2000, description="Why rejected or rolled back")
    created_at: datetime = Field(default_factory=utc_now)

    # -- the builders: every producer of a ModelUpdate says what happened through one of these ----------------------

    @classmethod
    def promoted(cls, checkpoint: CheckpointFacts, *, reason: str) -> ModelUpdate:
        """`checkpoint`'s version now serves (an operator's import with --promote)."""
        return cls(
            status="promoted",
            version=checkpoint.version,
            parent=checkpoint.parent,
            current_version=checkpoint.version,
            threshold=checkpoint.threshold,
            new_validation_error=checkpoint.validation_error,
            new_anomaly_error=checkpoint.anomaly_error,
            dataset_size={"normal": checkpoint.dataset.n_normal, "defect": checkpoint.dataset.n_defect},
            reason=reason,
        )

    @classmethod
    def rolled_back(
        cls, checkpoint: CheckpointFacts, previous: str | None, *, reason: str | None = None
    ) -> ModelUpdate:
        """`checkpoint`'s version serves again instead of `previous`."""
        return cls(
            status="rolled_back",
            version=checkpoint.version,
            parent=previous,
            current_version=checkpoint.version,
            threshold=checkpoint.threshold,
            new_validation_error=checkpoint.validation_error,
            new_anomaly_error=checkpoint.anomaly_error,
            reason=reason or (f"rolled back from {previous}" if previous else "rolled back"),
        )

    @classmethod
    def of_batch(
        cls, result: RetrainOutcome, scans: Sequence[AnnouncedScan], dataset_size: Mapping[str, int]
    ) -> ModelUpdate:
        """What a retrained batch decided: the candidate's errors, the version and threshold serving now."""
        scan_ids, job_ids = _ids(scans)
        return cls(
            status=result.status,
            version=result.version,
            parent=result.parent,
            current_version=result.current_version,
            threshold=result.current_threshold,
            new_validation_error=result.new_validation_error,
            new_anomaly_error=result.new_anomaly_error,
            dataset_size=dict(dataset_size),
            scan_ids=scan_ids,
            job_ids=job_ids,
            reason=result.reason,
        )

    @classmethod
    def unchanged(
        cls, current: CheckpointFacts, scans: Sequence[AnnouncedScan], dataset_size: Mapping[str, int]
    ) -> ModelUpdate:
        """A batch of scans the dataset already held: nothing was trained, the current model stands.

        Sent only when somebody waits for these scans (job ids), so a facade request still gets its answer.
        """
        scan_ids, job_ids = _ids(scans)
        return cls(
            status="promoted",
            version=current.version,
            parent=None,
            current_version=current.version,
            threshold=current.threshold,
            new_validation_error=current.validation_error,
            new_anomaly_error=current.anomaly_error,
            dataset_size=dict(dataset_size),
            scan_ids=scan_ids,
            job_ids=job_ids,
            reason="the dataset already held these scans: nothing to retrain",
        )


class DatasetFacts(Protocol):
    @property
    def n_normal(self) -> int: ...
    @property
    def n_defect(self) -> int: ...


class CheckpointFacts(Protocol):
    """What an update says of a checkpoint (`model_core.checkpoint.CheckpointMetadata` has these)."""

    @property
    def dataset(self) -> DatasetFacts: ...
    @property
    def version(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def threshold(self) -> float: ...
    @property
    def validation_error(self) -> float | None: ...
    @property
    def anomaly_error(self) -> float | None: ...


class RetrainOutcome(Protocol):
    """What a retrain job decided (`consumers.retrain.job.JobResult` has these)."""

    @property
    def status(self) -> Literal["promoted", "rejected"]: ...
    @property
    def version(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def current_version(self) -> str: ...
    @property
    def current_threshold(self) -> float: ...
    @property
    def new_validation_error(self) -> float | None: ...
    @property
    def new_anomaly_error(self) -> float | None: ...
    @property
    def reason(self) -> str: ...


class AnnouncedScan(Protocol):
    """A scan a batch took in, as an update names it."""

    @property
    def scan_id(self) -> str: ...
    @property
    def job_id(self) -> str | None: ...


def _ids(scans: Sequence[AnnouncedScan]) -> tuple[list[str], list[str]]:
    scan_ids = list(dict.fromkeys(s.scan_id for s in scans))
    job_ids = list(dict.fromkeys(s.job_id for s in scans if s.job_id))
    return scan_ids, job_ids
