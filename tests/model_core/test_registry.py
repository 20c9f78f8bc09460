import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model_core.checkpoint import (
    METADATA_FILE,
    CheckpointMetadata,
    build_manifest,
    draft_name,
    is_draft,
    read_metadata,
    verify_checkpoint,
    write_metadata,
)
from model_core.errors import BlobNotFound, CheckpointIntegrityError, InvalidVersion, RegistryConflict, RegistryError
from model_core.manifest import MANIFEST_FILE
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
    assert first.split("-")[1] == build_manifest(tmp_path / "a", "any").digest[:16]
    records = registry.list_versions()
    assert [r.version for r in records] == [first, second]
    assert records[0].metadata.label == "it-a" and records[0].metadata.version == first
    assert {r.status for r in records} == {"candidate"}
    assert registry.current_version() is None
    # The same checkpoint again (a retry after a crash): the same version, nothing new written.
    assert registry.publish(tmp_path / "a") == first
    assert len(registry.versions()) == 2
    # The same model files under other metadata (another threshold) are other content.
    assert registry.publish(checkpoint(tmp_path / "a2", b"aaaa")) not in (first, second)


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
    assert read_metadata(fetched).version == version == verify_checkpoint(fetched).version
    assert verify_checkpoint(fetched).label == "provisional"
    # metadata.json is never rewritten: the version is the manifest's name
    assert (fetched / METADATA_FILE).read_bytes() == (tmp_path / "1" / METADATA_FILE).read_bytes()
    assert json.loads((fetched / MANIFEST_FILE).read_bytes())["version"] == version


def test_versions_sort_by_sequence_past_9999() -> None:
    names = ["v10000-00000000", "v0002-ffffffff", "v9999-00000001"]
    assert sorted(names, key=version_sequence) == ["v0002-ffffffff", "v9999-00000001", "v10000-00000000"]
    assert registry_version(7, "3fa2c91b" + "0" * 56) == "v0007-3fa2c91b00000000"
    for bad in ("it-v1", "v1-abc", "v0001-XYZXYZXY", "v0001-3fa2c91b/../x", "v0001-3fa2c91b\n"):
        with pytest.raises(RegistryError):
            version_sequence(bad)


class RecordingStore:
    """A `BlobStore` that records every call before passing it on."""

    def __init__(self, inner: LocalBlobStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return self.inner.get(key)

    def put(self, key: str, data: bytes) -> None:
        self.calls.append(("put", key))
        self.inner.put(key, data)

    def exists(self, key: str) -> bool:
        self.calls.append(("exists", key))
        return self.inner.exists(key)

    def list(self, prefix: str) -> list[str]:
        self.calls.append(("list", prefix))
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.calls.append(("delete", key))
        self.inner.delete(key)


HOSTILE_VERSIONS = [
    "../x",
    "v1/../../current",
    "v0001-abcdef12/../../current",
    "v0001-abcdef12/",
    "../../etc/passwd",
    "v0001-ABCDEF12",
    "v0001-abcdef12\n",
    "v0001-abcdef1",
    "",
    "current",
]


@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
def test_hostile_version_names_are_refused_before_any_io(tmp_path: Path, version: str) -> None:
    store = RecordingStore(LocalBlobStore(tmp_path / "registry"))
    registry = Registry(store)
    dest = tmp_path / "out" / "ckpt"
    calls: list[Callable[[], object]] = [
        lambda: registry.fetch(version, dest),
        lambda: registry.promote(version),
        lambda: registry.rollback(version),
        lambda: registry.metadata(version),
        lambda: registry.status(version),
        lambda: registry.mark_rejected(version, "no"),
    ]
    for call in calls:
        with pytest.raises(InvalidVersion) as caught:
            call()
        assert caught.value.code == "invalid_version" and isinstance(caught.value, RegistryError)
    assert store.calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even the destination's parent


def test_a_current_pointer_naming_a_path_is_refused(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    store.put(
        "current.json", json.dumps({"version": "../../x", "updated_at": "2026-01-01T00:00:00Z", "owner": "x"}).encode()
    )
    with pytest.raises(RegistryError, match="bad current pointer"):
        registry.current_version()


def swap_memory_and_rewrite_its_hash(store: LocalBlobStore, version: str) -> None:
    store.put(f"versions/{version}/nested/memory.npz", b"the attacker's memory bank")
    raw = json.loads(store.get(f"versions/{version}/{METADATA_FILE}"))
    raw["files"]["nested/memory.npz"] = hashlib.sha256(b"the attacker's memory bank").hexdigest()
    store.put(f"versions/{version}/{METADATA_FILE}", json.dumps(raw).encode())


def rewrite_threshold(store: LocalBlobStore, version: str) -> None:
    raw = json.loads(store.get(f"versions/{version}/{METADATA_FILE}"))
    raw["threshold"] = 1e9
    store.put(f"versions/{version}/{METADATA_FILE}", json.dumps(raw).encode())


def rewrite_threshold_and_the_manifest(store: LocalBlobStore, version: str) -> None:
    rewrite_threshold(store, version)
    manifest = json.loads(store.get(f"versions/{version}/{MANIFEST_FILE}"))
    manifest["files"][METADATA_FILE] = hashlib.sha256(store.get(f"versions/{version}/{METADATA_FILE}")).hexdigest()
    store.put(f"versions/{version}/{MANIFEST_FILE}", json.dumps(manifest).encode())


def rename_in_the_manifest(store: LocalBlobStore, version: str) -> None:
    manifest = json.loads(store.get(f"versions/{version}/{MANIFEST_FILE}"))
    manifest["version"] = "v0001-" + "0" * 16
    store.put(f"versions/{version}/{MANIFEST_FILE}", json.dumps(manifest).encode())


def drop_the_manifest(store: LocalBlobStore, version: str) -> None:
    store.delete(f"versions/{version}/{MANIFEST_FILE}")


@pytest.mark.parametrize(
    "tamper",
    [
        swap_memory_and_rewrite_its_hash,
        rewrite_threshold,
        rewrite_threshold_and_the_manifest,
        rename_in_the_manifest,
        drop_the_manifest,
    ],
)
def test_a_tampered_version_is_never_served(
    store: LocalBlobStore, tmp_path: Path, tamper: Callable[[LocalBlobStore, str], None]
) -> None:
    registry = Registry(store)
    good = registry.publish(checkpoint(tmp_path / "good", b"good"), "promoted")
    bad = registry.publish(checkpoint(tmp_path / "bad", b"weights"))
    tamper(store, bad)
    with pytest.raises(CheckpointIntegrityError):
        registry.fetch(bad, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()
    with pytest.raises(CheckpointIntegrityError):
        registry.rollback(bad)
    assert registry.current_version() == good
    assert [r.version for r in registry.list_versions()] == [good]


def test_a_version_copied_under_another_name_is_refused(store: LocalBlobStore, tmp_path: Path) -> None:
    registry = Registry(store)
    one = registry.publish(checkpoint(tmp_path / "1", b"one"))
    two = registry.publish(checkpoint(tmp_path / "2", b"two"))
    for key in store.list(f"versions/{one}/"):  # the other version's files, manifest and all, under `two`
        store.put(key.replace(one, two), store.get(key))
    for key in store.list(f"versions/{two}/"):
        if not store.exists(key.replace(two, one)):
            store.delete(key)
    with pytest.raises(CheckpointIntegrityError) as caught:
        registry.fetch(two, tmp_path / "copy")
    assert caught.value.reason == "name_mismatch"
