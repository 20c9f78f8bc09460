"""Checkpoint round trip and the Detector API the consumers and the facade rely on."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_core.checkpoint import is_draft, read_metadata, write_metadata
from model_core.detector import SPEC_FILE, Detector
from model_core.errors import CheckpointIntegrityError
from model_core.training import TrainedDetector, TrainingConfig, train_detector


@pytest.fixture(scope="module")
def trained(spiral: Callable[..., np.ndarray]) -> TrainedDetector:
    rng = np.random.default_rng(0)
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig

    config = TrainingConfig(
        network=NetworkConfig(image_size=64, depth=2, base_filters=4),
        memory=PatchMemoryConfig.for_image_size(64, bank_per_row=100),
        epochs=1,
    )
    normal = np.stack([spiral(rng) for _ in range(10)])
    defects = np.stack([spiral(rng, pore=True) for _ in range(3)])
    return train_detector(normal, defects, config)


@pytest.fixture
def checkpoint(trained: TrainedDetector, tmp_path: Path) -> Path:
    return trained.save(tmp_path / "ckpt", source="test-batch", sample_ids=["a", "b"], n_defect=3)


def test_save_load_round_trip_scores_the_same(
    trained: TrainedDetector, checkpoint: Path, make_slices: Callable[..., np.ndarray]
) -> None:
    detector = Detector.load(checkpoint)
    assert is_draft(detector.version) and detector.version.endswith("Z-testbatc")
    assert detector.metadata.label is None
    assert detector.cell_view == "cylindrical"
    assert detector.threshold == pytest.approx(trained.threshold.threshold)
    assert detector.image_size == 64
    assert detector.metadata.validation_error == pytest.approx(trained.validation_error)
    assert detector.metadata.dataset.sample_ids == ["a", "b"]
    images = make_slices(3, seed=5, pore=True)
    loaded = detector.score_batch(images)
    fresh = trained.core.scores(images, trained.threshold.threshold)
    for a, b in zip(loaded, fresh, strict=True):
        assert a.anomaly_score == pytest.approx(b.anomaly_score, rel=1e-5)
        assert a.reconstruction_error == pytest.approx(b.reconstruction_error, rel=1e-5)


def test_score_batch_shapes_verdicts_and_determinism(checkpoint: Path, make_slices: Callable[..., np.ndarray]) -> None:
    detector = Detector.load(checkpoint)
    images = make_slices(4, seed=6)
    first, second = detector.score_batch(images), detector.score_batch(images)
    assert len(first) == 4
    for a, b in zip(first, second, strict=True):
        assert a.error_map.shape == (64, 64) and a.error_map.dtype == np.float32
        assert a.is_anomaly == (a.anomaly_score > detector.threshold)
        assert a.anomaly_score == b.anomaly_score and a.reconstruction_error == b.reconstruction_error
    assert detector.score_batch(np.zeros((0, 64, 64), np.float32)) == []


def test_score_batch_refuses_the_wrong_size(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="64"):
        Detector.load(checkpoint).score_batch(np.zeros((1, 32, 32), np.float32))


def test_a_tampered_checkpoint_is_refused(checkpoint: Path) -> None:
    memory = checkpoint / "memory.npz"
    memory.write_bytes(memory.read_bytes() + b"x")
    with pytest.raises(CheckpointIntegrityError):
        Detector.load(checkpoint)


def test_a_checkpoint_with_a_missing_file_is_refused(checkpoint: Path) -> None:
    (checkpoint / "autoencoder.keras").unlink()
    with pytest.raises(CheckpointIntegrityError):
        Detector.load(checkpoint)


def test_a_caller_chosen_version_still_names_the_checkpoint_but_is_deprecated(
    trained: TrainedDetector, tmp_path: Path
) -> None:
    with pytest.warns(DeprecationWarning, match="draft_name"):
        checkpoint = trained.save(tmp_path / "ckpt", version="v-test")
    assert Detector.load(checkpoint).version == "v-test"


def test_a_checkpoint_from_before_cell_views_loads_and_scores_unchanged(
    checkpoint: Path, make_slices: Callable[..., np.ndarray]
) -> None:
    images = make_slices(3, seed=5, pore=True)
    now = Detector.load(checkpoint).score_batch(images)
    # detector.json as it was written before cell views: polar grid names, no cell_view
    spec = json.loads((checkpoint / SPEC_FILE).read_text())
    assert spec.pop("cell_view") == "cylindrical"
    memory = spec["memory"]
    memory["radial"], memory["angular"], memory["outer"] = (
        memory.pop("rows"),
        memory.pop("columns"),
        memory.pop("extent"),
    )
    (checkpoint / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    write_metadata(checkpoint, read_metadata(checkpoint))  # the spec's new hash
    old = Detector.load(checkpoint)
    assert old.cell_view == "cylindrical"
    for a, b in zip(old.score_batch(images), now, strict=True):
        assert a.anomaly_score == b.anomaly_score and a.reconstruction_error == b.reconstruction_error
        np.testing.assert_array_equal(a.error_map, b.error_map)
