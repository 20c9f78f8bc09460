from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model_core.checkpoint import (
    METADATA_FILE,
    CheckpointMetadata,
    draft_name,
    is_draft,
    verify_checkpoint,
    write_metadata,
)
from model_core.errors import BlobNotFound, CheckpointIntegrityError, RegistryConflict, RegistryError
from model_core.registry import (
    LEASE_KEY,
    VERSION_PATTERN,
    LocalBlobStore,
    Registry,
    registry_version,
    version_sequence,
)


def checkpoint(root: Path, weights: bytes, *, version: str = "trained-1") -> Path:
    root.mkdir(parents=True)
    (root / "model.bin").write_bytes(weights)
    (root / "nested").mkdir()
    (root / "nested" / "memory.npz").write_bytes(weights[::-1])
    write_metadata(root, CheckpointMetadata.create(version=version, threshold=0.5, image_size=64))
    return root


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "registry")


def test_local_blob_store_round_trip_and_atomic_layout(store: LocalBlobStore) -> None:
    store.put("versions/v1/a.bin", b"one")
    store.put("versions/v1/a.bin", b"two")  # replaced whole
    store.put("current.json", b"{}")
    assert store.get("versions/v1/a.bin") == b"two"
    assert store.list("versions/") == ["versions/v1/a.bin"]
    assert store.exists("current.json") and not store.exists("nope")
    store.delete("current.json")
    store.delete("current.json")  # deleting twice is fine
    with pytest.raises(BlobNotFound):
        store.get("current.json")
    for bad in ("../escape", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(RegistryError):
            store.put(bad, b"x")


def test_publish_assigns_sequenced_content_hashed_versions(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    first = registry.publish(checkpoint(tmp_path / "a", b"aaaa", version="it-a"))
    second = registry.publish(checkpoint(tmp_path / "b", b"bbbb"))
    assert VERSION_PATTERN.fullmatch(first) and first.startswith("v0001-")
    assert second.startswith("v0002-")
    assert first[-8:] == verify_checkpoint(tmp_path / "a").content_hash[:8]
    records = registry.list_versions()
    assert [r.version for r in records] == [first, second]
    assert records[0].metadata.label == "it-a" and records[0].metadata.version == first
    assert {r.status for r in records} == {"candidate"}
    assert registry.current_version() is None
    # Same content again: the same version, nothing new written.
    assert registry.publish(checkpoint(tmp_path / "a2", b"aaaa")) == first
    assert len(registry.versions()) == 2


def test_a_draft_is_published_under_the_registry_version_and_kept_as_label(
    store: LocalBlobStore, tmp_path: Path
) -> None:
    name = draft_name(source="batch-1")
    version = Registry(store).publish(checkpoint(tmp_path / "a", b"aaaa", version=name))
    published = Registry(store).metadata(version)
    assert published.version == version and VERSION_PATTERN.fullmatch(version)
    assert published.label == name and is_draft(published.label)


def test_fetch_verifies_and_refuses_a_tampered_version(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    version = registry.publish(checkpoint(tmp_path / "a", b"weights"))
    fetched = registry.fetch(version, tmp_path / "out" / "ckpt")
    assert verify_checkpoint(fetched).version == version
    assert (fetched / "nested" / "memory.npz").read_bytes() == b"sthgiew"
    with pytest.raises(RegistryError):  # never into a directory that holds something
        registry.fetch(version, fetched)

    store.put(f"versions/{version}/model.bin", b"swapped behind our back")
    with pytest.raises(CheckpointIntegrityError):
        registry.fetch(version, tmp_path / "again")
    assert not (tmp_path / "again").exists()
    assert [p.name for p in (tmp_path).iterdir() if p.name.startswith(".fetch")] == []

    store.delete(f"versions/{version}/nested/memory.npz")
    with pytest.raises(CheckpointIntegrityError):
        registry.fetch(version, tmp_path / "missing")
    with pytest.raises(RegistryError):
        registry.fetch("v0099-00000000", tmp_path / "unknown")


def test_promote_rollback_and_reject(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    one = registry.publish(checkpoint(tmp_path / "1", b"one"), "promoted")
    two = registry.publish(checkpoint(tmp_path / "2", b"two"))
    assert registry.current_version() == one
    registry.promote(two)
    assert registry.current_version() == two

    assert registry.rollback(one, reason="two misses cracks") == two
    assert registry.current_version() == one
    states = {r.version: (r.status, r.current) for r in registry.list_versions()}
    assert states == {one: ("promoted", True), two: ("rolled_back", False)}
    assert registry.status(two).reason == "two misses cracks"

    three = registry.publish(checkpoint(tmp_path / "3", b"three"))
    registry.mark_rejected(three, "validation error regressed")
    assert registry.status(three).status == "rejected"
    with pytest.raises(RegistryError):
        registry.mark_rejected(one, "the serving model")
    with pytest.raises(RegistryError):
        registry.rollback(one)  # already current
    with pytest.raises(RegistryError):
        registry.promote("v0042-deadbeef")


def test_rollback_refuses_a_damaged_or_unknown_version(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    one = registry.publish(checkpoint(tmp_path / "1", b"one"))
    two = registry.publish(checkpoint(tmp_path / "2", b"two"), "promoted")
    store.put(f"versions/{one}/model.bin", b"rotten")
    with pytest.raises(CheckpointIntegrityError):
        registry.rollback(one)
    with pytest.raises(RegistryError):
        registry.rollback("v0009-12345678")
    with pytest.raises(RegistryError):
        registry.rollback("../../etc")
    assert registry.current_version() == two


def test_versions_are_immutable(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    version = registry.publish(checkpoint(tmp_path / "1", b"one"))
    before = {key: store.get(key) for key in store.list(f"versions/{version}/")}
    registry.promote(version)
    registry.publish(checkpoint(tmp_path / "1b", b"one"))
    registry.publish(checkpoint(tmp_path / "2", b"two"))
    assert {key: store.get(key) for key in store.list(f"versions/{version}/")} == before


def test_a_half_written_version_is_never_listed_nor_current(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    good = registry.publish(checkpoint(tmp_path / "1", b"one"), "promoted")
    # A writer that died after uploading the files but before the metadata.
    store.put("versions/v0002-abcdef12/model.bin", b"partial")
    assert registry.versions() == [good]
    assert registry.current_version() == good
    with pytest.raises(RegistryError):
        registry.promote("v0002-abcdef12")
    # Its number is not handed out again.
    assert registry.publish(checkpoint(tmp_path / "3", b"three")).startswith("v0003-")


def test_a_second_writer_gets_a_conflict_until_the_lease_ends(store: LocalBlobStore, tmp_path: Path) -> None:
    clock = Clock()
    retrain = Registry(store, owner="retrain", lease_ttl_s=30, clock=clock)
    operator = Registry(store, owner="operator-cli", lease_ttl_s=30, clock=clock)
    one = operator.publish(checkpoint(tmp_path / "1", b"one"), "promoted")
    assert not store.exists(LEASE_KEY)  # a single call releases its lease
    with retrain.writer():
        two = retrain.publish(checkpoint(tmp_path / "2", b"two"))
        with pytest.raises(RegistryConflict) as caught:
            operator.rollback(one)
        assert caught.value.retriable and "retrain" in str(caught.value)
        retrain.promote(two)
    assert operator.current_version() == two
    operator.mark_rejected(one, "old")  # free again once the holder is done


def test_an_expired_lease_of_a_crashed_writer_is_taken_over(store: LocalBlobStore, tmp_path: Path) -> None:
    clock = Clock()
    crashed = Registry(store, owner="crashed", lease_ttl_s=30, clock=clock)
    survivor = Registry(store, owner="survivor", lease_ttl_s=30, clock=clock)
    holder = crashed.writer()
    holder.__enter__()  # never exits: the process died holding the lease
    version = crashed.publish(checkpoint(tmp_path / "1", b"one"))
    with pytest.raises(RegistryConflict):
        survivor.promote(version)
    clock.now += timedelta(seconds=31)
    survivor.promote(version)
    assert survivor.current_version() == version
    with pytest.raises(RegistryConflict):  # the old holder lost it and must not write the pointer
        crashed.promote(version)


def test_metadata_of_the_fetched_copy_names_the_registry_version(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    version = registry.publish(checkpoint(tmp_path / "1", b"one", version="provisional"))
    fetched = registry.fetch(version, tmp_path / "fetched")
    assert CheckpointMetadata.model_validate_json((fetched / METADATA_FILE).read_bytes()).version == version


def test_versions_sort_by_sequence_past_9999() -> None:
    names = ["v10000-00000000", "v0002-ffffffff", "v9999-00000001"]
    assert sorted(names, key=version_sequence) == ["v0002-ffffffff", "v9999-00000001", "v10000-00000000"]
    assert registry_version(7, "3fa2c91b" + "0" * 56) == "v0007-3fa2c91b"
    for bad in ("it-v1", "v1-abc", "v0001-XYZXYZXY", "v0001-3fa2c91b/../x", "v0001-3fa2c91b\n"):
        with pytest.raises(RegistryError):
            version_sequence(bad)
