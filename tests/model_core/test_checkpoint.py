import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from model_core.checkpoint import (
    METADATA_FILE,
    CheckpointMetadata,
    DatasetSnapshot,
    content_hash,
    draft_name,
    is_draft,
    read_metadata,
    verify_checkpoint,
    write_metadata,
)
from model_core.errors import CheckpointError, CheckpointIntegrityError
from model_core.registry import VERSION_PATTERN


def make_checkpoint(root: Path, *, weights: bytes = b"weights") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.bin").write_bytes(weights)
    (root / "parts").mkdir(exist_ok=True)
    (root / "parts" / "memory.npz").write_bytes(b"memory")
    metadata = CheckpointMetadata.create(
        version="provisional-1",
        threshold=0.25,
        threshold_rule="99th percentile of normal validation scores",
        image_size=64,
        validation_error=0.01,
        anomaly_error=None,
        metrics={"auc": 0.9, "parent": None, "epochs_run": 3, "nested": {"f1": 0.5}},
        sample_ids=["b", "a", "c"],
        n_defect=1,
    )
    write_metadata(root, metadata)
    return root


def test_write_then_verify_round_trips_every_field(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    metadata = verify_checkpoint(root)
    assert set(metadata.files) == {"model.bin", "parts/memory.npz"}
    assert metadata.threshold == 0.25 and metadata.image_size == 64
    assert metadata.metrics["nested"] == {"f1": 0.5}
    assert metadata.dataset.sample_ids == ["a", "b", "c"]
    assert (metadata.dataset.n_normal, metadata.dataset.n_defect) == (2, 1)
    assert metadata.dataset.content_hash == DatasetSnapshot.of(["c", "a", "b"]).content_hash
    assert metadata.code_version.startswith("0.")
    assert read_metadata(root) == metadata


def test_content_hash_depends_on_the_files_only(tmp_path: Path) -> None:
    one = verify_checkpoint(make_checkpoint(tmp_path / "one"))
    same = verify_checkpoint(make_checkpoint(tmp_path / "same"))
    other = verify_checkpoint(make_checkpoint(tmp_path / "other", weights=b"other weights"))
    assert one.content_hash == same.content_hash == content_hash(dict(reversed(one.files.items())))
    assert one.content_hash != other.content_hash


@pytest.mark.parametrize(
    "damage",
    [
        lambda root: (root / "model.bin").write_bytes(b"tampered"),
        lambda root: (root / "parts" / "memory.npz").unlink(),
        lambda root: (root / "stray.txt").write_text("not listed"),
        lambda root: (root / METADATA_FILE).write_text("{not json"),
        lambda root: (root / METADATA_FILE).unlink(),
        lambda root: (root / "link").symlink_to(root / "model.bin"),
    ],
    ids=["changed", "missing", "extra", "bad-metadata", "no-metadata", "symlink"],
)
def test_verify_refuses_any_mismatch(tmp_path: Path, damage: object) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    damage(root)  # type: ignore[operator]
    with pytest.raises(CheckpointIntegrityError):
        verify_checkpoint(root)


def test_metadata_rewrite_keeps_a_checkpoint_valid(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    raw = json.loads((root / METADATA_FILE).read_text())
    raw["version"] = "v0001-abcdef12"
    (root / METADATA_FILE).write_text(json.dumps(raw))
    assert verify_checkpoint(root).version == "v0001-abcdef12"


def test_an_empty_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    metadata = CheckpointMetadata.create(version="x", threshold=1.0, image_size=8)
    with pytest.raises(CheckpointError):
        write_metadata(tmp_path, metadata)
    with pytest.raises(CheckpointIntegrityError):
        verify_checkpoint(tmp_path / "absent")


def test_draft_names_sort_by_time_carry_their_source_and_are_never_versions() -> None:
    early = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert draft_name(created_at=early) == "draft-20260102T030405123456Z"
    assert draft_name(source="3fa2c91b-77aa-4e0f", created_at=early) == "draft-20260102T030405123456Z-3fa2c91b"
    assert draft_name(source="../a b/", created_at=early).endswith("Z-ab")  # safe as a directory name
    assert draft_name(source="", created_at=early) == draft_name(created_at=early)
    in_paris = early.astimezone(timezone(timedelta(hours=1)))
    assert draft_name(created_at=in_paris) == draft_name(created_at=early)  # always UTC
    later = draft_name(source="00000000", created_at=early + timedelta(microseconds=1))
    assert sorted([later, draft_name(source="ffffffff", created_at=early)])[-1] == later
    name = draft_name(source="x" * 100)
    assert is_draft(name) and len(name) <= 64 and not VERSION_PATTERN.fullmatch(name)
    assert not is_draft("v0001-abcdef12")
