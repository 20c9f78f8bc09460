"""The registry with signing and verification keys: what a loader accepts and refuses."""

import hashlib
import json
from pathlib import Path

import pytest

from model_core.checkpoint import METADATA_FILE, CheckpointMetadata, content_hash, verify_checkpoint, write_metadata
from model_core.errors import CheckpointIntegrityError, InvalidKeyError, RegistryError
from model_core.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest
from model_core.registry import LocalBlobStore, Registry, registry_version
from model_core.signing import KeyPair, generate_keypair, load_signing_key, load_verify_key

KEYS = generate_keypair()
OTHER = generate_keypair()


def checkpoint(root: Path, weights: bytes, *, threshold: float = 0.5) -> Path:
    root.mkdir(parents=True)
    (root / "model.bin").write_bytes(weights)
    (root / "memory.npz").write_bytes(weights[::-1])
    write_metadata(root, CheckpointMetadata.create(version="draft-test", threshold=threshold, image_size=64))
    return root


def publisher(store: LocalBlobStore, keys: KeyPair = KEYS) -> Registry:
    """The retrain consumer: signs what it publishes, verifies what it fetches."""
    return Registry(
        store,
        owner="retrain",
        signer=load_signing_key(keys.signing_key),
        verify_key=load_verify_key(keys.verify_key),
    )


def loader(store: LocalBlobStore) -> Registry:
    """An inference consumer or the facade: the verification key only."""
    return Registry(store, verify_key=load_verify_key(KEYS.verify_key))


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "registry")


def test_a_signed_version_loads_everywhere(store: LocalBlobStore, tmp_path: Path) -> None:
    version = publisher(store).publish(checkpoint(tmp_path / "a", b"weights"), "promoted")
    assert store.exists(f"versions/{version}/{SIGNATURE_FILE}")
    reader = loader(store)
    assert reader.current_version() == version and reader.metadata(version).label == "draft-test"
    fetched = reader.fetch(version, tmp_path / "copy")
    assert verify_checkpoint(fetched, load_verify_key(KEYS.verify_key)).version == version
    assert Registry(store).fetch(version, tmp_path / "dev-copy").is_dir()  # no key: accepted too
    assert [r.version for r in reader.list_versions()] == [version]


def test_unsigned_versions_load_only_without_a_verification_key(store: LocalBlobStore, tmp_path: Path) -> None:
    version = Registry(store).publish(checkpoint(tmp_path / "a", b"weights"))  # development: no key
    assert not store.exists(f"versions/{version}/{SIGNATURE_FILE}")
    assert Registry(store).fetch(version, tmp_path / "dev").is_dir()
    for refuse in (
        lambda: loader(store).fetch(version, tmp_path / "prod"),
        lambda: loader(store).metadata(version),
        lambda: publisher(store).promote(version),
        lambda: publisher(store).rollback(version),
    ):
        with pytest.raises(CheckpointIntegrityError, match="unsigned checkpoint") as caught:
            refuse()
        assert caught.value.reason == "unsigned"
    assert not (tmp_path / "prod").exists()
    assert loader(store).list_versions() == []
    # A signing publisher does not reuse the unsigned version for the same content: it signs a new one.
    signed = publisher(store).publish(tmp_path / "a")
    assert signed != version and loader(store).fetch(signed, tmp_path / "signed").is_dir()


def test_a_forged_signature_is_refused(store: LocalBlobStore, tmp_path: Path) -> None:
    version = publisher(store).publish(checkpoint(tmp_path / "a", b"weights"))
    manifest = store.get(f"versions/{version}/{MANIFEST_FILE}")
    store.put(f"versions/{version}/{SIGNATURE_FILE}", load_signing_key(OTHER.signing_key).sign(manifest))
    with pytest.raises(CheckpointIntegrityError) as caught:
        loader(store).fetch(version, tmp_path / "copy")
    assert caught.value.reason == "unknown_key" and OTHER.key_id in str(caught.value)
    # A whole version published by someone with another key (write access to the bucket, not our key).
    theirs = Registry(store, signer=load_signing_key(OTHER.signing_key)).publish(checkpoint(tmp_path / "b", b"evil"))
    with pytest.raises(CheckpointIntegrityError) as caught:
        loader(store).fetch(theirs, tmp_path / "theirs")
    assert caught.value.reason == "unknown_key"
    assert not (tmp_path / "copy").exists() and not (tmp_path / "theirs").exists()


def test_a_re_signed_tampered_manifest_needs_the_key(store: LocalBlobStore, tmp_path: Path) -> None:
    """The attacker rewrites the threshold, fixes the manifest and publishes it under a name that
    matches: everything checks out but the signature, which they cannot make."""
    publisher(store).publish(checkpoint(tmp_path / "a", b"weights"))
    [version] = Registry(store).versions()
    prefix = f"versions/{version}/"
    raw = json.loads(store.get(prefix + METADATA_FILE))
    raw["threshold"] = 1e9
    metadata = json.dumps(raw).encode()
    manifest = Manifest.model_validate_json(store.get(prefix + MANIFEST_FILE))
    files = {**manifest.files, METADATA_FILE: hashlib.sha256(metadata).hexdigest()}
    forged = Manifest(version="x", files=files)
    name = registry_version(2, forged.digest)
    for key in store.list(prefix):
        if not key.endswith(("/" + METADATA_FILE, "/" + MANIFEST_FILE)):
            store.put(key.replace(version, name), store.get(key))  # the old signature comes along
    store.put(f"versions/{name}/{MANIFEST_FILE}", forged.model_copy(update={"version": name}).to_bytes())
    store.put(f"versions/{name}/{METADATA_FILE}", metadata)
    assert Registry(store).fetch(name, tmp_path / "dev").is_dir()  # without a key: nothing stops it
    with pytest.raises(CheckpointIntegrityError, match="signature does not match the manifest"):
        loader(store).fetch(name, tmp_path / "prod")
    store.delete(f"versions/{name}/{SIGNATURE_FILE}")
    with pytest.raises(CheckpointIntegrityError, match="unsigned checkpoint"):
        loader(store).fetch(name, tmp_path / "prod")


def legacy_version(store: LocalBlobStore, tmp_path: Path) -> str:
    """A version as the registry published it before manifests: metadata.json (with the version)
    and the model files, named by the hash of the file hashes."""
    root = checkpoint(tmp_path / "legacy", b"old weights")
    metadata = CheckpointMetadata.model_validate_json((root / METADATA_FILE).read_bytes())
    version = registry_version(1, content_hash(metadata.files))[:14]
    for name in metadata.files:
        store.put(f"versions/{version}/{name}", (root / name).read_bytes())
    store.put(f"versions/{version}/{METADATA_FILE}", metadata.model_copy(update={"version": version}).to_json())
    return version


def test_versions_from_before_manifests(store: LocalBlobStore, tmp_path: Path) -> None:
    version = legacy_version(store, tmp_path)
    dev = Registry(store)
    assert dev.versions() == [version] and dev.metadata(version).threshold == 0.5
    assert verify_checkpoint(dev.fetch(version, tmp_path / "dev")).version == version
    dev.promote(version)
    with pytest.raises(CheckpointIntegrityError, match="unsigned checkpoint") as caught:
        loader(store).fetch(version, tmp_path / "prod")
    assert caught.value.reason == "unsigned"
    # New versions continue the sequence.
    assert publisher(store).publish(checkpoint(tmp_path / "new", b"new")).startswith("v0002-")
    # A swapped file with its hash rewritten no longer matches the legacy name either.
    store.put(f"versions/{version}/model.bin", b"swapped")
    raw = json.loads(store.get(f"versions/{version}/{METADATA_FILE}"))
    raw["files"]["model.bin"] = hashlib.sha256(b"swapped").hexdigest()
    store.put(f"versions/{version}/{METADATA_FILE}", json.dumps(raw).encode())
    with pytest.raises(CheckpointIntegrityError) as caught:
        dev.fetch(version, tmp_path / "swapped")
    assert caught.value.reason == "name_mismatch"


def test_keys_that_do_not_belong_together_are_refused(store: LocalBlobStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError, match="does not belong"):
        Registry(store, signer=load_signing_key(OTHER.signing_key), verify_key=load_verify_key(KEYS.verify_key))
    with pytest.raises(RegistryError, match="no signing key"):
        loader(store).publish(checkpoint(tmp_path / "a", b"weights"))
    assert store.list("") == []
