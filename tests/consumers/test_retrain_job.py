"""The retrain job with tiny real models (64 px): bootstrap, warm start, re-evaluation, a poisoned
batch rejected by the gate. The registry is a directory-backed stand-in at the registry boundary."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from consumers.retrain.job import RetrainJob
from consumers.retrain.manifest import DatasetManifest, ManifestEntry, NewScan, add_scan, settle_batch
from consumers.retrain.plan import plan_batch
from model_core.checkpoint import METADATA_FILE, verify_checkpoint
from model_core.network import NetworkConfig
from model_core.scoring import PatchMemoryConfig
from model_core.training import TrainingConfig

pytestmark = pytest.mark.slow

SIZE = 64


def spiral(rng: np.random.Generator, pores: int = 0) -> np.ndarray:
    """A small wound-cell slice (can ring, spiral windings, core, noise) with `pores` dark pores."""
    centre = SIZE / 2 + rng.uniform(-1.5, 1.5, 2)
    radius = SIZE * rng.uniform(0.42, 0.45)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    r, theta = np.hypot(rows - centre[0], cols - centre[1]), np.arctan2(rows - centre[0], cols - centre[1])
    image = 0.45 + 0.2 * np.cos(2 * np.pi * r / (radius * 0.12) - theta + rng.uniform(0, 2 * np.pi))
    image[r < radius * 0.15] = 0.1
    image[r > radius - 1] = 0.05
    image[np.abs(r - radius) < 1.0] = 1.0
    for _ in range(pores):
        angle, at = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.7) * radius
        image[np.hypot(rows - centre[0] - at * np.sin(angle), cols - centre[1] - at * np.cos(angle)) < 2.5] = 0.0
    image += rng.normal(0, 0.02, image.shape)
    return np.asarray(np.clip(image, 0, 1), dtype=np.float32)


class DirectoryRegistry:
    """Publish copies a verified checkpoint under a new version; promote moves the pointer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pointer: str | None = None
        self.rejected: dict[str, str] = {}
        self.published: list[str] = []

    def current_version(self) -> str | None:
        return self.pointer

    def publish(self, checkpoint_dir: Path) -> str:
        verify_checkpoint(checkpoint_dir)
        version = f"v{len(self.published) + 1:04d}"
        shutil.copytree(checkpoint_dir, self.root / version)
        metadata = json.loads((self.root / version / METADATA_FILE).read_text())
        metadata["version"] = version
        (self.root / version / METADATA_FILE).write_text(json.dumps(metadata))
        self.published.append(version)
        return version

    def fetch(self, version: str, dest: Path) -> Path:
        shutil.copytree(self.root / version, dest)
        return dest

    def promote(self, version: str) -> None:
        self.pointer = version

    def mark_rejected(self, version: str, reason: str) -> None:
        self.rejected[version] = reason


class Data:
    """A manifest and the images behind it, grown batch by batch like the service does."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(1)
        self.manifest = DatasetManifest()
        self.images: dict[str, np.ndarray] = {}
        self.offset = 0

    def accept(self, count: int, label: str, *, pores: int = 0) -> set[str]:
        changed = set()
        for _ in range(count):
            image = spiral(self.rng, pores=pores)
            sha = hashlib.sha256(image.tobytes()).hexdigest()
            self.images[sha] = image
            self.offset += 1
            scan = NewScan(scan_id=f"cell-{self.offset}", sha256=sha, label=label, source=f"t/0/{self.offset}")
            self.manifest, _ = add_scan(self.manifest, scan)
            changed.add(sha)
        return changed

    def load(self, entries: list[ManifestEntry], size: int) -> np.ndarray:
        assert size == SIZE
        return np.stack([self.images[e.sha256] for e in entries]) if entries else np.empty((0, SIZE, SIZE))


@pytest.fixture
def tiny() -> TrainingConfig:
    return TrainingConfig(
        network=NetworkConfig(image_size=SIZE, depth=2, base_filters=4),
        memory=PatchMemoryConfig.for_image_size(SIZE, bank_per_row=150),
        epochs=2,
        batch_size=8,
    )


def test_bootstrap_warm_start_reevaluation_and_a_poisoned_batch(tmp_path: Path, tiny: TrainingConfig) -> None:
    data = Data()
    registry = DirectoryRegistry(tmp_path / "registry")
    registry.root.mkdir()
    job = RetrainJob(registry, data.load, tmp_path / "work", bootstrap_config=tiny, warm_config=tiny, tolerance=0.05)

    def run(changed: set[str], has_model: bool) -> object:
        plan = plan_batch(data.manifest, changed, has_model=has_model, replay_factor=2)
        result = job.run(plan, "batch")
        data.manifest = settle_batch(data.manifest, changed, result.version, rejected=result.status == "rejected")
        return result

    # An empty registry: the first normal scans train the initial model.
    first = run(data.accept(24, "normal"), has_model=False)
    assert first.status == "promoted" and first.trained and first.parent is None  # type: ignore[attr-defined]
    assert registry.current_version() == first.version == "v0001"  # type: ignore[attr-defined]
    current = job.current()
    assert current is not None and current.version == "v0001"  # the registry's version, not the provisional one

    # Defects only: no training, errors and threshold re-evaluated, a new version broadcast.
    second = run(data.accept(8, "defect", pores=1), has_model=True)
    assert second.status == "promoted" and not second.trained  # type: ignore[attr-defined]
    assert second.parent == "v0001" and second.new_anomaly_error is not None  # type: ignore[attr-defined]
    assert registry.current_version() == second.version  # type: ignore[attr-defined]

    # New normal scans: warm start from the current model, promoted.
    third = run(data.accept(8, "normal"), has_model=True)
    assert third.trained and third.parent == second.version  # type: ignore[attr-defined]
    assert third.new_validation_error is not None and third.new_validation_error > 0  # type: ignore[attr-defined]

    # A poisoned batch: slices riddled with pores, labelled normal, teach the memory that pores are normal.
    serving = registry.current_version()
    poisoned = run(data.accept(24, "normal", pores=12), has_model=True)
    assert poisoned.status == "rejected", poisoned.reason  # type: ignore[attr-defined]
    assert "held-out" in poisoned.reason  # type: ignore[attr-defined]
    assert registry.current_version() == serving == poisoned.current_version  # type: ignore[attr-defined]
    assert poisoned.version in registry.rejected  # type: ignore[attr-defined]
    # Its scans are quarantined: never replayed by later batches.
    assert data.manifest.size_by_label()["normal"] == 32
    assert not list((tmp_path / "work" / "candidates").iterdir())  # no half-written candidates left
