"""Training a tiny detector end to end (64 px, 2 epochs): slow-ish, a few seconds each."""

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

from model_core.detector import Detector
from model_core.gate import decide
from model_core.training import EpochProgress, TrainingConfig, train_detector


@pytest.fixture(scope="module")
def data(spiral: Callable[..., np.ndarray]) -> dict[str, np.ndarray]:
    spiral_slice = spiral
    rng = np.random.default_rng(0)
    return {
        "normal": np.stack([spiral_slice(rng) for _ in range(16)]),
        "more": np.stack([spiral_slice(rng) for _ in range(8)]),
        "defect": np.stack([spiral_slice(rng, pore=True) for _ in range(6)]),
    }


def test_tiny_training_reports_progress_and_separates_pores(
    data: dict[str, np.ndarray], tiny_config: TrainingConfig
) -> None:
    steps: list[EpochProgress] = []
    trained = train_detector(data["normal"], data["defect"], tiny_config, progress=steps.append)
    assert [s.epoch for s in steps] == [1, 2]
    assert steps[-1].seconds_left == 0.0
    assert all(np.isfinite(s.loss) and np.isfinite(s.val_loss) for s in steps)
    assert trained.metrics.image_auroc is not None and trained.metrics.image_auroc >= 0.9
    assert trained.anomaly_error is not None and trained.validation_error > 0
    assert "recall-optimal at false-positive rate" in trained.threshold.rule  # known defects: the default fpr rule
    scores = trained.core.scores(data["defect"], trained.threshold.threshold)
    assert len(scores) == 6
    assert all(s.error_map.shape == (64, 64) and s.error_map.dtype == np.float32 for s in scores)
    assert sum(s.is_anomaly for s in scores) >= 5


def test_normal_only_training_uses_the_quantile_rule(data: dict[str, np.ndarray], tiny_config: TrainingConfig) -> None:
    trained = train_detector(data["normal"], None, tiny_config.model_copy(update={"epochs": 1}))
    assert "normal-only" in trained.threshold.rule
    assert trained.anomaly_error is None and trained.metrics.image_auroc is None


def test_early_stopping_ends_training_before_the_last_epoch(
    data: dict[str, np.ndarray], tiny_config: TrainingConfig
) -> None:
    # A learning rate of ~0 never improves the validation loss after the first epoch.
    config = tiny_config.model_copy(update={"epochs": 10, "patience": 1, "learning_rate": 1e-12})
    trained = train_detector(data["normal"][:6], None, config)
    assert len(trained.history) < 10


def test_training_rejects_wrongly_sized_slices(tiny_config: TrainingConfig) -> None:
    with pytest.raises(ValueError, match="64x64"):
        train_detector(np.zeros((3, 32, 32), np.float32), None, tiny_config)
    with pytest.raises(ValueError, match="at least one"):
        train_detector([], None, tiny_config)


def test_warm_start_keeps_what_the_parent_knew(data: dict[str, np.ndarray], tiny_config: TrainingConfig) -> None:
    first = train_detector(data["normal"], data["defect"], tiny_config)
    # Checkpoint I/O is tested in test_detector.py; here the parent is the trained parts themselves.
    metadata: Any = SimpleNamespace(version="v-parent", threshold=first.threshold.threshold)
    parent = Detector(first.core, cast(Any, metadata))
    replay = np.concatenate([data["more"], data["normal"][:8]])
    child = train_detector(replay, data["defect"], tiny_config, parent=parent)
    assert child.parent_version == "v-parent"
    assert child.parent_metrics is not None and child.parent_metrics.image_auroc is not None
    assert child.metrics.image_auroc is not None
    assert child.metrics.image_auroc >= child.parent_metrics.image_auroc - 0.05
    assert decide(child.metrics, child.parent_metrics, tolerance=0.05).promote
    # The memory keeps the parent's patches next to the new ones.
    assert child.core.memory.bank[0].shape[0] >= parent.core.memory.bank[0].shape[0]
    # Warm start: the child's weights started from the parent's, not from a fresh initialisation.
    assert child.core.autoencoder is not parent.core.autoencoder
