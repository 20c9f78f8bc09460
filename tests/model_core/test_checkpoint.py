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
    file_sha256,
    is_draft,
    read_metadata,
    save_metadata,
    verify_checkpoint,
    write_manifest,
    write_metadata,
)
from model_core.errors import CheckpointError, CheckpointIntegrityError
from model_core.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, registry_version
from model_core.registry import VERSION_PATTERN
from model_core.signing import generate_keypair, load_signing_key, load_verify_key


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


def test_metadata_is_covered_by_the_manifest(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    manifest = json.loads((root / MANIFEST_FILE).read_bytes())
    assert set(manifest["files"]) == {METADATA_FILE, "model.bin", "parts/memory.npz"}
    assert manifest["version"] == verify_checkpoint(root).version == "provisional-1"
    raw = json.loads((root / METADATA_FILE).read_text())
    raw["threshold"] = 1e9
    (root / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(CheckpointIntegrityError, match=r"metadata\.json") as caught:
        verify_checkpoint(root)
    assert caught.value.reason == "files_changed"


def rewrite_json(path: Path, **changes: object) -> None:
    raw = json.loads(path.read_bytes())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def test_a_swapped_file_with_its_hash_rewritten_in_the_metadata_is_refused(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    (root / "parts" / "memory.npz").write_bytes(b"the attacker's memory bank")
    files = {**read_metadata(root).files, "parts/memory.npz": file_sha256(root / "parts" / "memory.npz")}
    rewrite_json(root / METADATA_FILE, files=files)
    with pytest.raises(CheckpointIntegrityError) as caught:
        verify_checkpoint(root)
    assert caught.value.reason == "files_changed"


def named(root: Path, version: str) -> Manifest:
    """Rename the checkpoint's manifest (as the registry does at publish)."""
    manifest = Manifest.model_validate_json((root / MANIFEST_FILE).read_bytes()).model_copy(update={"version": version})
    write_manifest(root, manifest)
    return manifest


def test_a_registry_name_must_match_the_manifest_digest(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    digest = Manifest.model_validate_json((root / MANIFEST_FILE).read_bytes()).digest
    named(root, registry_version(3, digest))
    assert verify_checkpoint(root).version == registry_version(3, digest)
    assert verify_checkpoint(root).label == "provisional-1"
    for wrong in (registry_version(3, "0" * 64), f"v0003-{digest[:8]}"):  # another hash; too short a name
        named(root, wrong)
        with pytest.raises(CheckpointIntegrityError) as caught:
            verify_checkpoint(root)
        assert caught.value.reason == "name_mismatch"
    # Rewriting metadata and manifest together gives other content, which the name no longer matches.
    named(root, registry_version(3, digest))
    rewrite_json(root / METADATA_FILE, threshold=1e9)
    manifest = Manifest.model_validate_json((root / MANIFEST_FILE).read_bytes())
    forged = {**manifest.files, METADATA_FILE: file_sha256(root / METADATA_FILE)}
    write_manifest(root, manifest.model_copy(update={"files": forged}))
    with pytest.raises(CheckpointIntegrityError) as caught:
        verify_checkpoint(root)
    assert caught.value.reason == "name_mismatch"


def test_signatures_are_checked_only_with_a_verification_key(tmp_path: Path) -> None:
    keys, other = generate_keypair(), generate_keypair()
    signer, verify_key = load_signing_key(keys.signing_key), load_verify_key(keys.verify_key)
    root = make_checkpoint(tmp_path / "ckpt")
    assert verify_checkpoint(root).version == "provisional-1"  # unsigned, no key: development
    with pytest.raises(CheckpointIntegrityError, match="unsigned checkpoint") as caught:
        verify_checkpoint(root, verify_key)
    assert caught.value.reason == "unsigned"

    manifest = Manifest.model_validate_json((root / MANIFEST_FILE).read_bytes())
    write_manifest(root, manifest, signer.sign(manifest.to_bytes()))
    assert verify_checkpoint(root, verify_key).threshold == 0.25
    assert verify_checkpoint(root, [load_verify_key(other.verify_key), verify_key]).threshold == 0.25  # rotation
    with pytest.raises(CheckpointIntegrityError) as caught:
        verify_checkpoint(root, load_verify_key(other.verify_key))
    assert caught.value.reason == "unknown_key"

    (root / SIGNATURE_FILE).write_bytes(load_signing_key(other.signing_key).sign(manifest.to_bytes()))
    with pytest.raises(CheckpointIntegrityError) as caught:  # forged: signed, but not by our key
        verify_checkpoint(root, verify_key)
    assert caught.value.reason == "unknown_key"
    assert verify_checkpoint(root).version == "provisional-1"  # without a key the signature is not read


def legacy_checkpoint(root: Path, version: str | None = None) -> Path:
    """A checkpoint as written before manifests: metadata.json only, named by content_hash."""
    make_checkpoint(root)
    (root / MANIFEST_FILE).unlink()
    metadata = read_metadata(root)
    name = version or registry_version(7, metadata.content_hash)[:14]  # v0007-<8 hex>
    save_metadata(root, metadata.model_copy(update={"version": name}))
    return root


def test_checkpoints_from_before_manifests_load_only_without_a_verification_key(tmp_path: Path) -> None:
    root = legacy_checkpoint(tmp_path / "old")
    assert VERSION_PATTERN.fullmatch(verify_checkpoint(root).version)
    with pytest.raises(CheckpointIntegrityError, match="unsigned checkpoint") as caught:
        verify_checkpoint(root, load_verify_key(generate_keypair().verify_key))
    assert caught.value.reason == "unsigned"
    # Their name still holds their files: a swapped file with its hash rewritten no longer matches it.
    (root / "model.bin").write_bytes(b"swapped")
    save_metadata(
        root,
        read_metadata(root).model_copy(
            update={"files": {**read_metadata(root).files, "model.bin": file_sha256(root / "model.bin")}}
        ),
    )
    with pytest.raises(CheckpointIntegrityError) as caught:
        verify_checkpoint(root)
    assert caught.value.reason == "name_mismatch"


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


def test_rewriting_the_metadata_drops_a_signature_that_no_longer_holds(tmp_path: Path) -> None:
    keys = generate_keypair()
    root = make_checkpoint(tmp_path / "ckpt")
    manifest = Manifest.model_validate_json((root / MANIFEST_FILE).read_bytes())
    write_manifest(root, manifest, load_signing_key(keys.signing_key).sign(manifest.to_bytes()))
    write_metadata(root, read_metadata(root).model_copy(update={"threshold": 0.5}))
    assert not (root / SIGNATURE_FILE).exists() and verify_checkpoint(root).threshold == 0.5
