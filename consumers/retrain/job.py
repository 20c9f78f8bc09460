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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from consumers.retrain.manifest import ManifestEntry
from consumers.retrain.plan import BatchPlan
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

    def mark_rejected(self, version: str, reason: str) -> None: ...


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


def new_version(batch_id: str, now: datetime | None = None) -> str:
    """Versions sort by creation time; the suffix names the batch that made it."""
    now = now or datetime.now(UTC)
    return f"v{now:%Y%m%dT%H%M%S%f}Z-{batch_id[:8]}"


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
        loader: Callable[[Path], Detector] = Detector.load,
        progress: Callable[[EpochProgress], None] | None = None,
    ) -> None:
        self._registry = registry
        self._images = images
        self._work_dir = work_dir
        self._bootstrap_config = bootstrap_config
        self._warm_config = warm_config
        self._tolerance = tolerance
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

    def run(self, plan: BatchPlan, batch_id: str) -> JobResult:
        started = time.monotonic()
        parent = self.current()
        if plan.action == "train":
            candidate = self._train(plan, parent)
        elif plan.action == "reevaluate" and parent is not None:
            candidate = self._reevaluate(plan, parent)
        else:
            raise ValueError(f"nothing to run for a {plan.action!r} plan")
        gate = self._gate(plan, candidate, parent)
        version = new_version(batch_id)
        directory = self._work_dir / "candidates" / version
        try:
            candidate.save(directory, version=version, sample_ids=[e.sha256 for e in plan.train])
            published = self._registry.publish(directory)
            if gate.promote:
                self._registry.promote(published)
                self._serving = None  # load what the registry serves now, under its registry version
                self.current()
            else:
                self._registry.mark_rejected(published, gate.reason)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        current = self._serving
        assert current is not None or not gate.promote
        return JobResult(
            status="promoted" if gate.promote else "rejected",
            version=published,
            parent=parent.version if parent is not None else None,
            current_version=current.version if current is not None else published,
            current_threshold=current.threshold if current is not None else candidate.threshold.threshold,
            candidate_threshold=candidate.threshold.threshold,
            new_validation_error=candidate.validation_error,
            new_anomaly_error=candidate.anomaly_error,
            reason=gate.reason,
            trained=plan.action == "train",
            seconds=time.monotonic() - started,
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
            return decide(candidate.metrics, None, self._tolerance)
        if plan.action != "train" or len(plan.holdout) < MIN_HOLDOUT:
            return decide(candidate.metrics, candidate.parent_metrics, self._tolerance)
        # Scans of this batch may be wrong (a poisoned batch): judge both models on scans the
        # candidate never saw and that earlier, accepted batches vouched for.
        normal = self._images(plan.holdout[:MAX_REFERENCE], parent.image_size)
        defects = self._images(plan.defects, parent.image_size) if plan.defects else None
        theirs = _metrics(parent, normal, defects, parent.threshold)
        ours = metrics_at(score_set(candidate.core, normal, defects), candidate.threshold.threshold)
        decision = decide(ours, theirs, self._tolerance)
        return decision.model_copy(update={"reason": f"{decision.reason} on {len(normal)} held-out scans"})


def _metrics(detector: Detector, normal: np.ndarray, defects: np.ndarray | None, threshold: float) -> ValidationMetrics:
    return metrics_at(score_set(detector.core, normal, defects), threshold)
