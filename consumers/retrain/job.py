"""The retrain job of one batch (blocking: run it in a worker thread).

Load the serving model, warm-start it on the batch's normal scans plus replay (or only re-evaluate
errors and threshold when the batch brought defects alone), checkpoint the candidate in the
registry, put it through the promotion gate on the trusted held-out scans and promote or reject it.
The registry publishes a version completely before anything can point at it, so a crash at any
step leaves the current model as it was.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from consumers.retrain.manifest import ManifestEntry
from consumers.retrain.plan import BatchPlan
from model_core.checkpoint import CheckpointMetadata
from model_core.detector import Detector
from model_core.gate import GateDecision, ValidationMetrics, decide
from model_core.thresholds import calibrate
from model_core.training import EpochProgress, TrainedDetector, TrainingConfig, metrics_at, score_set, train_detector

log = logging.getLogger(__name__)

MIN_HOLDOUT = 3  # fewer trusted scans than this: the gate uses train_detector's own validation split
MAX_REFERENCE = 64  # normal scans the gate and a re-evaluation score (enough for a mean and a quantile)

ImageLoader = Callable[[list[ManifestEntry], int], np.ndarray]


class WritableRegistry(Protocol):
    """The part of `model_core.registry.Registry` the retrain job needs."""

    def current_version(self) -> str | None: ...

    def fetch(self, version: str, dest: Path) -> Path: ...

    def publish(self, checkpoint_dir: Path) -> str: ...

    def promote(self, version: str) -> None: ...

    def mark_rejected(self, version: str, reason: str | None = None) -> None: ...

    def rollback(self, version: str, *, reason: str | None = None) -> str | None: ...

    def metadata(self, version: str) -> CheckpointMetadata: ...

    def writer(self) -> AbstractContextManager[object]: ...


@dataclass(frozen=True)
class Candidate:
    """A trained (or re-evaluated) model saved locally, with the gate's verdict on it."""

    directory: Path
    gate: GateDecision
    parent: str | None
    threshold: float
    validation_error: float | None
    anomaly_error: float | None
    trained: bool
    started: float


@dataclass(frozen=True)
class JobResult:
    status: Literal["promoted", "rejected"]
    version: str
    parent: str | None
    current_version: str
    current_threshold: float
    candidate_threshold: float
    new_validation_error: float | None
    new_anomaly_error: float | None
    reason: str
    trained: bool
    seconds: float


class RetrainJob:
    def __init__(
        self,
        registry: WritableRegistry,
        images: ImageLoader,
        work_dir: Path,
        *,
        bootstrap_config: TrainingConfig,
        warm_config: TrainingConfig,
        tolerance: float,
        auroc_drop: float = 0.01,
        loader: Callable[[Path], Detector] = Detector.load,
        progress: Callable[[EpochProgress], None] | None = None,
    ) -> None:
        self._registry = registry
        self._images = images
        self._work_dir = work_dir
        self._bootstrap_config = bootstrap_config
        self._warm_config = warm_config
        self._tolerance = tolerance
        self._auroc_drop = auroc_drop
        self._loader = loader
        self._progress = progress
        self._serving: Detector | None = None

    def current(self) -> Detector | None:
        """The registry's current model, loaded (cached while the pointer does not move)."""
        version = self._registry.current_version()
        if version is None:
            self._serving = None
        elif self._serving is None or self._serving.version != version:
            dest = self._work_dir / "current" / version
            if dest.exists():  # left over from an interrupted fetch; the registry verifies a fresh copy
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._serving = self._loader(self._registry.fetch(version, dest))
        return self._serving

    def roll_back(self, version: str, reason: str) -> tuple[CheckpointMetadata, str | None]:
        """Serve `version` again (its files verified first), holding the writer's lease; returns its
        metadata and the version it replaced."""
        with self._registry.writer():
            previous = self._registry.rollback(version, reason=reason)
            return self._registry.metadata(version), previous

    def clean(self) -> None:
        """Remove candidates a crashed run left behind (never published, or published already)."""
        shutil.rmtree(self._work_dir / "candidates", ignore_errors=True)

    def discard(self, candidate: Candidate) -> None:
        shutil.rmtree(candidate.directory, ignore_errors=True)

    def run(self, plan: BatchPlan, batch_id: str) -> JobResult:
        return self.commit(self.build(plan, batch_id))

    def build(self, plan: BatchPlan, batch_id: str) -> Candidate:
        """Train (or re-evaluate), gate and save the candidate locally; nothing is published yet."""
        started = time.monotonic()
        parent = self.current()
        if plan.action == "train":
            trained = self._train(plan, parent)
        elif plan.action == "reevaluate" and parent is not None:
            trained = self._reevaluate(plan, parent)
        else:
            raise ValueError(f"nothing to run for a {plan.action!r} plan")
        gate = self._gate(plan, trained, parent)
        directory = self._work_dir / "candidates" / batch_id
        shutil.rmtree(directory, ignore_errors=True)
        # Named as every checkpoint is (model_core.checkpoint.draft_name) until the registry publishes it.
        trained.save(directory, source=batch_id, sample_ids=[e.sha256 for e in plan.train])
        return Candidate(
            directory=directory,
            gate=gate,
            parent=parent.version if parent is not None else None,
            threshold=trained.threshold.threshold,
            validation_error=trained.validation_error,
            anomaly_error=trained.anomaly_error,
            trained=plan.action == "train",
            started=started,
        )

    def commit(self, candidate: Candidate) -> JobResult:
        """Publish the candidate and promote or reject it, holding the registry's writer lease.

        Safe to call again after a transient failure: publishing the same content returns the
        version it already has, and promoting or rejecting twice changes nothing.
        """
        gate = candidate.gate
        with self._registry.writer():
            version = self._registry.publish(candidate.directory)
            if gate.promote and self._registry.current_version() != candidate.parent:
                # An operator rolled back while this candidate trained: it was judged against a
                # model that no longer serves, and must not undo the rollback.
                gate = GateDecision(promote=False, reason="the current model changed during training (a rollback)")
            if gate.promote:
                self._registry.promote(version)
            else:
                self._registry.mark_rejected(version, gate.reason)
        shutil.rmtree(candidate.directory, ignore_errors=True)
        current = self.current()  # what the registry serves now, under its registry version
        if current is None:
            raise RuntimeError("the registry has no current version after a promotion")
        return JobResult(
            status="promoted" if gate.promote else "rejected",
            version=version,
            parent=candidate.parent,
            current_version=current.version,
            current_threshold=current.threshold,
            candidate_threshold=candidate.threshold,
            new_validation_error=candidate.validation_error,
            new_anomaly_error=candidate.anomaly_error,
            reason=gate.reason,
            trained=candidate.trained,
            seconds=time.monotonic() - candidate.started,
        )

    def _train(self, plan: BatchPlan, parent: Detector | None) -> TrainedDetector:
        config = self._bootstrap_config if parent is None else self._warm_config
        size = parent.image_size if parent is not None else config.network.image_size
        if size != config.network.image_size:
            config = config.model_copy(update={"network": config.network.model_copy(update={"image_size": size})})
        normal = self._images(plan.train, size)
        defects = self._images(plan.defects, size) if plan.defects else None
        log.info(
            "training on %d normal scans (%d new, %d replayed), %d known defects, %s",
            len(normal),
            plan.new_normals,
            len(plan.replay),
            0 if defects is None else len(defects),
            f"warm start from {parent.version}" if parent is not None else "from scratch",
        )
        return train_detector(normal, defects, config, parent=parent, progress=self._progress)

    def _reevaluate(self, plan: BatchPlan, parent: Detector) -> TrainedDetector:
        """The current model with errors and threshold recomputed for the grown anomaly set."""
        normal = self._images(plan.holdout[:MAX_REFERENCE], parent.image_size)
        defects = self._images(plan.defects, parent.image_size)
        scored = score_set(parent.core, normal, defects)
        decision = calibrate(scored.normal_scores, scored.defect_scores, self._warm_config.threshold)
        log.info("re-evaluated %s on %d normal and %d defect scans", parent.version, len(normal), len(defects))
        return TrainedDetector(
            core=parent.core,
            threshold=decision,
            metrics=metrics_at(scored, decision.threshold),
            parent_metrics=metrics_at(scored, parent.threshold),
            parent_version=parent.version,
            config=self._warm_config,
        )

    def _gate(self, plan: BatchPlan, candidate: TrainedDetector, parent: Detector | None) -> GateDecision:
        if parent is None:
            return decide(candidate.metrics, None, self._tolerance, self._auroc_drop)
        if plan.action != "train" or len(plan.holdout) < MIN_HOLDOUT:
            return decide(candidate.metrics, candidate.parent_metrics, self._tolerance, self._auroc_drop)
        # Scans of this batch may be wrong (a poisoned batch): judge both models on scans the
        # candidate never saw and that earlier, accepted batches vouched for.
        normal = self._images(plan.holdout[:MAX_REFERENCE], parent.image_size)
        defects = self._images(plan.defects, parent.image_size) if plan.defects else None
        theirs = _metrics(parent, normal, defects, parent.threshold)
        ours = metrics_at(score_set(candidate.core, normal, defects), candidate.threshold.threshold)
        decision = decide(ours, theirs, self._tolerance, self._auroc_drop)
        return decision.model_copy(update={"reason": f"{decision.reason} on {len(normal)} held-out scans"})


def _metrics(detector: Detector, normal: np.ndarray, defects: np.ndarray | None, threshold: float) -> ValidationMetrics:
    return metrics_at(score_set(detector.core, normal, defects), threshold)
