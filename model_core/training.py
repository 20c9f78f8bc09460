"""Training a detector from normal slices, or warm-starting one from a parent detector.

Steps: split off a normal validation set; train the autoencoder on augmented normal slices with
early stopping on the validation loss; collect the normal-patch memory (merged with the parent's,
so knowledge accumulates over retrainings); scale its rows on held-out normal slices; score the
validation set and any known defects; set the threshold; measure the gate's metrics for the new
model and, on the same data, for the parent.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model_core.augmentation import AugmentationConfig, augment_batch
from model_core.cell_view import DEFAULT_CELL_VIEW, cell_view
from model_core.detector import DetectorCore, DetectorSpec
from model_core.evaluation import auroc
from model_core.gate import ValidationMetrics
from model_core.network import NetworkConfig, build_autoencoder
from model_core.patch_memory import PatchMemory
from model_core.scoring import PatchMemoryConfig, layer_grid
from model_core.thresholds import ThresholdDecision, ThresholdRule, calibrate

if TYPE_CHECKING:
    from model_core.detector import Detector

log = logging.getLogger(__name__)


class TrainingConfig(BaseModel):
    """Everything that decides what `train_detector` produces (recorded in the metadata)."""

    model_config = ConfigDict(frozen=True)

    network: NetworkConfig = Field(default_factory=NetworkConfig)
    memory: PatchMemoryConfig = Field(default_factory=PatchMemoryConfig)
    cell_view: str = Field(DEFAULT_CELL_VIEW, description="How slices are unrolled (a warm start keeps the parent's)")
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    threshold: ThresholdRule = Field(default_factory=ThresholdRule)
    epochs: int = Field(40, ge=1, description="Most epochs of the autoencoder (early stopping may end sooner)")
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    patience: int = Field(5, ge=1, description="Epochs without a better validation loss before stopping")
    validation_fraction: float = Field(0.15, gt=0, lt=1, description="Normal slices held out for validation")
    calibration_fraction: float = Field(0.1, gt=0, lt=1, description="Training slices that scale the memory rows")
    seed: int = 0


@dataclass(frozen=True)
class EpochProgress:
    epoch: int
    epochs: int
    loss: float
    val_loss: float
    seconds_left: float


@dataclass
class TrainedDetector:
    """A freshly trained detector with what it was measured at; `save` makes it a checkpoint."""

    core: DetectorCore
    threshold: ThresholdDecision
    metrics: ValidationMetrics
    parent_metrics: ValidationMetrics | None
    parent_version: str | None
    config: TrainingConfig
    history: list[EpochProgress] = field(default_factory=list)
    training_seconds: float = 0.0

    @property
    def validation_error(self) -> float:
        return self.metrics.validation_error

    @property
    def anomaly_error(self) -> float | None:
        return self.metrics.anomaly_error

    def save(
        self,
        checkpoint_dir: Path,
        *,
        source: str | None = None,
        sample_ids: Sequence[str] = (),
        n_defect: int = 0,
        version: str | None = None,
    ) -> Path:
        """Write the model files and `metadata.json` (with every file's hash) to `checkpoint_dir`.

        The checkpoint is named by `model_core.checkpoint.draft_name` (with `source`, e.g. the id
        of the batch that made it) until `Registry.publish` gives it its version; read the name
        back with `read_metadata(checkpoint_dir).version`. `version` is deprecated: a name chosen
        by the caller, kept only until the retrain job stops passing one."""
        from model_core.checkpoint import CheckpointMetadata, draft_name, write_metadata

        if version is not None:
            warnings.warn(
                "TrainedDetector.save(version=...) is deprecated: checkpoints are named by draft_name "
                "(pass source=...) until the registry publishes them",
                DeprecationWarning,
                stacklevel=2,
            )
        checkpoint_dir = Path(checkpoint_dir)
        self.core.save_parts(checkpoint_dir)
        created = datetime.now(UTC)
        metadata = CheckpointMetadata.create(
            version=version or draft_name(source=source, created_at=created),
            parent=self.parent_version,
            created_at=created,
            threshold=self.threshold.threshold,
            threshold_rule=self.threshold.rule,
            validation_error=self.metrics.validation_error,
            anomaly_error=self.metrics.anomaly_error,
            metrics={
                **self.metrics.model_dump(),
                "parent": self.parent_metrics.model_dump() if self.parent_metrics else None,
                "epochs_run": len(self.history),
                "training_seconds": self.training_seconds,
            },
            sample_ids=list(sample_ids),
            n_defect=n_defect,
            image_size=self.core.image_size,
            extra={"detector": self.core.spec.model_dump(mode="json")},
        )
        write_metadata(checkpoint_dir, metadata)
        return checkpoint_dir


def _split(count: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    held = round(count * fraction) if count >= 3 else 0
    held = max(held, 1) if count >= 3 else 0
    if held == 0:  # too few slices to hold any out: use them for both (tests, first scans)
        return order, order
    return order[held:], order[:held]


def _train_autoencoder(
    model: Any,
    train: np.ndarray,
    val: np.ndarray,
    config: TrainingConfig,
    rng: np.random.Generator,
    progress: Callable[[EpochProgress], None] | None,
) -> list[EpochProgress]:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    best_loss, best_weights, waited = np.inf, model.get_weights(), 0
    history: list[EpochProgress] = []
    started = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        batch = augment_batch(train, config.augmentation, rng)[..., None]
        fit = model.fit(batch, batch, batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0)
        val_loss = float(model.evaluate(val[..., None], val[..., None], batch_size=config.batch_size, verbose=0))
        elapsed = time.monotonic() - started
        step = EpochProgress(
            epoch=epoch,
            epochs=config.epochs,
            loss=float(fit.history["loss"][-1]),
            val_loss=val_loss,
            seconds_left=elapsed / epoch * (config.epochs - epoch),
        )
        history.append(step)
        if progress is not None:
            progress(step)
        if val_loss < best_loss - 1e-7:
            best_loss, best_weights, waited = val_loss, model.get_weights(), 0
        else:
            waited += 1
            if waited >= config.patience:
                log.info("early stopping after epoch %d (best val loss %.6f)", epoch, best_loss)
                break
    model.set_weights(best_weights)
    return history


@dataclass(frozen=True)
class ScoredSet:
    """Scores of a validation set: normal slices and known defects (None when there are none)."""

    normal_errors: np.ndarray
    normal_scores: np.ndarray
    defect_errors: np.ndarray | None
    defect_scores: np.ndarray | None


def score_set(core: DetectorCore, normal_val: np.ndarray, defects: np.ndarray | None) -> ScoredSet:
    normal = core.scores(normal_val, np.inf)
    defect = core.scores(defects, np.inf) if defects is not None and len(defects) else None
    return ScoredSet(
        normal_errors=np.array([s.reconstruction_error for s in normal]),
        normal_scores=np.array([s.anomaly_score for s in normal]),
        defect_errors=np.array([s.reconstruction_error for s in defect]) if defect else None,
        defect_scores=np.array([s.anomaly_score for s in defect]) if defect else None,
    )


def metrics_at(scored: ScoredSet, threshold: float) -> ValidationMetrics:
    """The gate's metrics of one scored validation set at a threshold."""
    anomaly_error = image_auroc = recall = None
    if scored.defect_scores is not None and scored.defect_errors is not None:
        anomaly_error = float(scored.defect_errors.mean())
        image_auroc = auroc(scored.normal_scores, scored.defect_scores)
        recall = float((scored.defect_scores > threshold).mean())
    return ValidationMetrics(
        validation_error=float(scored.normal_errors.mean()),
        anomaly_error=anomaly_error,
        image_auroc=image_auroc,
        false_positive_rate=float((scored.normal_scores > threshold).mean()),
        recall=recall,
    )


def train_detector(
    normal: Sequence[np.ndarray] | np.ndarray,
    defects: Sequence[np.ndarray] | np.ndarray | None,
    config: TrainingConfig,
    *,
    parent: Detector | None = None,
    progress: Callable[[EpochProgress], None] | None = None,
) -> TrainedDetector:
    """Train on normal slices (preprocessed, (S, S) each); known defects only set the threshold.

    With `parent`, the autoencoder starts from the parent's weights and the patch memory extends
    the parent's; pass the new normal slices plus a replay sample of earlier ones as `normal`.
    """
    import keras

    started = time.monotonic()
    images = np.stack([np.asarray(x, dtype=np.float32) for x in normal]) if len(normal) else np.empty(0)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError("training needs at least one normal slice of shape (S, S)")
    size = config.network.image_size
    if images.shape[1:] != (size, size):
        raise ValueError(f"normal slices must be {size}x{size} (preprocess them first), got {images.shape[1:]}")
    defect_images = None
    if defects is not None and len(defects):
        defect_images = np.stack([np.asarray(x, dtype=np.float32) for x in defects])
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = _split(len(images), config.validation_fraction, rng)
    train, val = images[train_idx], images[val_idx]

    if parent is not None:
        if parent.image_size != size:
            raise ValueError(f"parent detector is {parent.image_size} px, config asks for {size} px")
        autoencoder = keras.models.clone_model(parent.core.autoencoder)
        autoencoder.set_weights(parent.core.autoencoder.get_weights())
        spec = parent.core.spec
    else:
        autoencoder = build_autoencoder(config.network, seed=config.seed)
        spec = DetectorSpec(network=config.network, memory=config.memory, cell_view=config.cell_view)
    # every training produces the fast form (a warm start from an older, exact parent too)
    spec = spec.model_copy(update={"search": "fast"})
    history = _train_autoencoder(autoencoder, train, val, config, rng, progress)

    bank_idx, calib_idx = _split(len(train), config.calibration_fraction, rng)
    view = cell_view(spec.cell_view)
    grids = [layer_grid(image, spec.memory, view)[0] for image in train]
    previous = parent.core.memory if parent else None
    memory = PatchMemory.fit([grids[i] for i in bank_idx], spec.memory, rng, previous, wrap=view.wraps)
    memory.calibrate_rows([grids[i] for i in calib_idx])
    memory = memory.with_fast_index(spec.fast, rng)
    core = DetectorCore(spec, autoencoder, memory)

    scored = score_set(core, val, defect_images)
    decision = calibrate(scored.normal_scores, scored.defect_scores, config.threshold)
    metrics = metrics_at(scored, decision.threshold)
    parent_metrics = None
    if parent is not None:
        parent_metrics = metrics_at(score_set(parent.core, val, defect_images), parent.threshold)
    return TrainedDetector(
        core=core,
        threshold=decision,
        metrics=metrics,
        parent_metrics=parent_metrics,
        parent_version=parent.version if parent is not None else None,
        config=config,
        history=history,
        training_seconds=time.monotonic() - started,
    )
