"""The registry on the real S3 endpoint (moto server from the session fixtures)."""

from pathlib import Path

import pytest

from model_core.checkpoint import CheckpointMetadata, verify_checkpoint, write_metadata
from model_core.errors import BlobNotFound, CheckpointIntegrityError, RegistryConflict, RegistryError
from model_core.manifest import SIGNATURE_FILE
from model_core.registry import Registry
from model_core.signing import generate_keypair, load_signing_key, load_verify_key
from schemas.settings import Settings
from storage.object_store import ObjectStore
from storage.registry_store import S3BlobStore

pytestmark = pytest.mark.integration


def checkpoint(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "autoencoder.keras").write_bytes(weights)
    (root / "memory.npz").write_bytes(weights * 2)
    write_metadata(root, CheckpointMetadata.create(version="trained", threshold=0.3, image_size=64))
    return root


@pytest.fixture
def blobs(settings: Settings, object_store: ObjectStore) -> S3BlobStore:
    object_store.ensure_bucket(settings.bucket_models)
    return S3BlobStore(object_store, settings.bucket_models)


def test_s3_blob_store_round_trip(blobs: S3BlobStore) -> None:
    blobs.put("versions/v0001-00000000/a.bin", b"\x00binary\xff")
    blobs.put("current.json", b'{"version": "x"}')
    assert blobs.get("versions/v0001-00000000/a.bin") == b"\x00binary\xff"
    assert blobs.list("versions/") == ["versions/v0001-00000000/a.bin"]
    assert blobs.exists("current.json")
    blobs.delete("current.json")
    assert not blobs.exists("current.json")
    with pytest.raises(BlobNotFound):
        blobs.get("current.json")
    with pytest.raises(RegistryError):
        blobs.put("../outside", b"x")


def test_a_missing_bucket_is_an_empty_registry(settings: Settings, object_store: ObjectStore) -> None:
    registry = Registry(S3BlobStore(object_store, settings.bucket_models + "-absent"))
    assert registry.list_versions() == []
    assert registry.current_version() is None


def test_registry_lifecycle_on_s3(blobs: S3BlobStore, tmp_path: Path) -> None:
    registry = Registry(blobs)
    one = registry.publish(checkpoint(tmp_path / "1", b"one"), "promoted")
    two = registry.publish(checkpoint(tmp_path / "2", b"two"))
    assert (one[:6], two[:6]) == ("v0001-", "v0002-")
    assert registry.publish(tmp_path / "1") == one  # immutable, idempotent
    assert registry.current_version() == one

    fetched = registry.fetch(two, tmp_path / "fetched")
    assert verify_checkpoint(fetched).version == two
    registry.promote(two)
    assert registry.rollback(one, reason="regression") == two
    assert {r.version: r.status for r in registry.list_versions()} == {one: "promoted", two: "rolled_back"}
    assert registry.current_version() == one


def test_tampered_object_is_refused_on_s3(blobs: S3BlobStore, tmp_path: Path) -> None:
    registry = Registry(blobs)
    good = registry.publish(checkpoint(tmp_path / "good", b"good"), "promoted")
    bad = registry.publish(checkpoint(tmp_path / "bad", b"bad"))
    blobs.put(f"versions/{bad}/autoencoder.keras", b"replaced in the bucket")
    with pytest.raises(CheckpointIntegrityError):
        registry.fetch(bad, tmp_path / "bad-copy")
    with pytest.raises(CheckpointIntegrityError):
        registry.rollback(bad)
    assert registry.current_version() == good


def test_half_written_version_and_second_writer_on_s3(blobs: S3BlobStore, tmp_path: Path) -> None:
    first = Registry(blobs, owner="retrain")
    second = Registry(blobs, owner="operator")
    one = first.publish(checkpoint(tmp_path / "1", b"one"), "promoted")
    blobs.put("versions/v0002-0badf00d/autoencoder.keras", b"files but no metadata yet")
    assert second.versions() == [one]
    with first.writer():
        with pytest.raises(RegistryConflict):
            second.publish(checkpoint(tmp_path / "2", b"two"))
        two = first.publish(checkpoint(tmp_path / "3", b"three"))
    assert two.startswith("v0003-")
    second.promote(two)
    assert first.current_version() == two


def test_signed_versions_on_s3(blobs: S3BlobStore, tmp_path: Path) -> None:
    keys = generate_keypair()
    verify_key = load_verify_key(keys.verify_key)
    retrain = Registry(blobs, owner="retrain", signer=load_signing_key(keys.signing_key), verify_key=verify_key)
    inference = Registry(blobs, verify_key=verify_key)
    unsigned = Registry(blobs, owner="dev").publish(checkpoint(tmp_path / "dev", b"dev"))
    signed = retrain.publish(checkpoint(tmp_path / "1", b"one"), "promoted")
    assert blobs.exists(f"versions/{signed}/{SIGNATURE_FILE}")
    assert verify_checkpoint(inference.fetch(signed, tmp_path / "copy"), verify_key).version == signed
    with pytest.raises(CheckpointIntegrityError, match="unsigned checkpoint"):
        inference.fetch(unsigned, tmp_path / "unsigned")
    blobs.put(
        f"versions/{signed}/metadata.json",
        blobs.get(f"versions/{signed}/metadata.json").replace(b'"threshold": 0.3', b'"threshold": 1e9'),
    )
    with pytest.raises(CheckpointIntegrityError):
        inference.fetch(signed, tmp_path / "tampered")
