"""The retrain job with tiny real models (64 px) and the real registry on a local blob store:
bootstrap, re-evaluation, warm start, a poisoned batch rejected by the gate, a rollback during
training, a second writer."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from consumers.retrain.job import JobResult, RetrainJob
from consumers.retrain.manifest import DatasetManifest, ManifestEntry, NewScan, add_scan, settle_batch
from consumers.retrain.plan import plan_batch
from model_core.errors import RegistryConflict
from model_core.network import NetworkConfig
from model_core.registry import LocalBlobStore, Registry
from model_core.scoring import PatchMemoryConfig
from model_core.training import TrainingConfig
from tests.helpers import spiral_slice

pytestmark = pytest.mark.slow

SIZE = 64


class Data:
    """A manifest and the images behind it, grown batch by batch like the service does."""

    images: ClassVar[dict[str, np.ndarray]] = {}  # shared by every Data of the module: images by content hash

    @classmethod
    def load_into(cls, entries: list[ManifestEntry], size: int) -> np.ndarray:
        assert size == SIZE
        return np.stack([cls.images[e.sha256] for e in entries]) if entries else np.empty((0, SIZE, SIZE))

    def __init__(self) -> None:
        self.rng = np.random.default_rng(1)
        self.manifest = DatasetManifest()
        self.offset = 0

    def accept(self, count: int, label: str, *, pores: int = 0) -> set[str]:
        changed = set()
        for _ in range(count):
            image = spiral_slice(self.rng, SIZE, pores=pores)
            sha = hashlib.sha256(image.tobytes()).hexdigest()
            self.images[sha] = image
            self.offset += 1
            scan = NewScan(scan_id=f"cell-{self.offset}", sha256=sha, label=label, source=f"t/0/{self.offset}")
            self.manifest, _ = add_scan(self.manifest, scan)
            changed.add(sha)
        return changed


@pytest.fixture
def tiny() -> TrainingConfig:
    return TrainingConfig(
        network=NetworkConfig(image_size=SIZE, depth=2, base_filters=4),
        memory=PatchMemoryConfig.for_image_size(SIZE, bank_per_row=150),
        epochs=2,
        batch_size=8,
    )


@pytest.fixture
def setup(tmp_path: Path, tiny: TrainingConfig) -> tuple[Data, Registry, RetrainJob]:
    registry = Registry(LocalBlobStore(tmp_path / "registry"), owner="retrain-test")
    job = RetrainJob(
        registry, Data.load_into, tmp_path / "work", bootstrap_config=tiny, warm_config=tiny, tolerance=0.05
    )
    return Data(), registry, job


def run(data: Data, job: RetrainJob, changed: set[str], *, has_model: bool = True) -> JobResult:
    plan = plan_batch(data.manifest, changed, has_model=has_model, replay_factor=2)
    result = job.run(plan, "batch")
    data.manifest = settle_batch(data.manifest, changed, result.version, rejected=result.status == "rejected")
    return result


def test_bootstrap_reevaluation_warm_start_and_a_poisoned_batch(
    tmp_path: Path, setup: tuple[Data, Registry, RetrainJob]
) -> None:
    data, registry, job = setup

    # An empty registry: the first normal scans train the initial model.
    first = run(data, job, data.accept(24, "normal"), has_model=False)
    assert first.status == "promoted" and first.trained and first.parent is None
    assert registry.current_version() == first.version == first.current_version
    assert first.version.startswith("v0001-")
    current = job.current()
    assert current is not None and current.version == first.version  # the registry's name, not the label
    assert first.current_threshold == current.threshold

    # Defects only: no training, errors and threshold re-evaluated, a new version broadcast.
    second = run(data, job, data.accept(8, "defect", pores=1))
    assert second.status == "promoted" and not second.trained
    assert second.parent == first.version and second.new_anomaly_error is not None
    assert registry.current_version() == second.version != first.version

    # New normal scans: warm start from the current model.
    third = run(data, job, data.accept(8, "normal"))
    assert third.trained and third.parent == second.version
    assert third.new_validation_error is not None and third.new_validation_error > 0

    # A poisoned batch: slices riddled with pores, labelled normal, teach the memory that pores are normal.
    serving = registry.current_version()
    poisoned = run(data, job, data.accept(24, "normal", pores=12))
    assert poisoned.status == "rejected", poisoned.reason
    assert "held-out" in poisoned.reason
    assert registry.current_version() == serving == poisoned.current_version
    assert registry.status(poisoned.version).status == "rejected"
    # Its scans are quarantined (never replayed), and no candidate is left on disk.
    assert data.manifest.size_by_label() == {"normal": 32, "defect": 8}
    assert not list((tmp_path / "work" / "candidates").iterdir())


def test_a_rollback_during_training_is_not_undone_and_a_second_writer_waits(
    setup: tuple[Data, Registry, RetrainJob], tmp_path: Path
) -> None:
    data, registry, job = setup
    first = run(data, job, data.accept(16, "normal"), has_model=False)
    second = run(data, job, data.accept(6, "normal"))
    assert second.status == "promoted", second.reason

    changed = data.accept(6, "normal")
    candidate = job.build(plan_batch(data.manifest, changed, has_model=True, replay_factor=2), "batch")
    registry.rollback(first.version, reason="operator")  # while the candidate trained
    result = job.commit(candidate)
    assert result.status == "rejected" and "rollback" in result.reason
    assert registry.current_version() == first.version == result.current_version

    # Another writer holds the lease: publishing waits (a retriable conflict), the registry is untouched.
    other = Registry(LocalBlobStore(tmp_path / "registry"), owner="retrain-other")
    candidate = job.build(plan_batch(data.manifest, changed, has_model=True, replay_factor=2), "batch")
    versions = registry.versions()
    with other.writer(), pytest.raises(RegistryConflict) as conflict:
        job.commit(candidate)
    assert conflict.value.retriable
    assert registry.versions() == versions and registry.current_version() == first.version
    assert job.commit(candidate).version not in versions  # once the lease is free, it goes through
