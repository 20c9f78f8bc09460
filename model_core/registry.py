"""The checkpoint registry: immutable, content-hashed versions on a blob store, a status per
version, a `current` pointer, promotion and rollback, and a single-writer lease.

Layout on the store (the same for a local directory and an S3 bucket):

    versions/<version>/<file>           the checkpoint's files, written once
    versions/<version>/metadata.json    written LAST: a version without it is invisible
    status/<version>.json               candidate | promoted | rejected | rolled_back (mutable)
    current.json                        the serving version, written last of all
    lease.json                          the writer lease: owner, token, expiry

Versions are ``v<sequence>-<first 8 hex of the content hash>`` (see `model_core.checkpoint`), the
only version a published checkpoint has; the draft name it was saved under (`draft_name`) stays
as `metadata.label`. Publishing the same content twice returns the existing version: a retry
after a crash is safe.

Single writer. Every mutating call takes the writer lease (or renews it when this registry
holds it via `writer()`), so a second writer gets `RegistryConflict` instead of interleaving
pointer updates. A crashed writer's lease expires after `lease_ttl_s`. Plain S3 has no
compare-and-swap, so the lease is written and read back. The residual race: two writers that
both read "no lease", then each write and read back its own lease before the other's write
lands, both go ahead. Each re-checks the lease just before writing the pointer, which narrows
that window to milliseconds but cannot close it on a store without conditional writes. Readers are never affected:
they only see complete versions and a pointer to one.

No S3 code here: `storage.registry_store.S3BlobStore` implements `BlobStore` on S3.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_core.checkpoint import METADATA_FILE, CheckpointMetadata, parse_metadata, save_metadata, verify_checkpoint
from model_core.errors import BlobNotFound, CheckpointIntegrityError, RegistryConflict, RegistryError

log = logging.getLogger(__name__)

VersionStatus = Literal["candidate", "promoted", "rejected", "rolled_back"]
VERSION_PATTERN = re.compile(r"^v(\d{4,})-([0-9a-f]{8})$")
CURRENT_KEY = "current.json"
LEASE_KEY = "lease.json"
DEFAULT_LEASE_TTL_S = 60.0


class BlobStore(Protocol):
    """Bytes under string keys ("a/b/c"). `get` raises `BlobNotFound` for a missing key."""

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could leave the store's root when mapped onto a file system."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or "\\" in key or any(p in ("..", ".", "") for p in key.split("/")) or not parts:
        raise RegistryError(f"invalid registry key {key!r}")
    return key


class LocalBlobStore:
    """A `BlobStore` in a local directory. Writes are atomic (temporary file + `os.replace`)."""

    TEMP_PREFIX = ".tmp-"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no object {key!r} in {self.root}") from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith(self.TEMP_PREFIX))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class VersionState(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: VersionStatus = "candidate"
    reason: str | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class CurrentPointer(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    previous: str | None = None
    updated_at: datetime
    owner: str


class Lease(BaseModel):
    model_config = ConfigDict(frozen=True)

    owner: str
    token: str
    expires_at: datetime


class VersionRecord(BaseModel):
    """One published version as `list_versions` reports it."""

    model_config = ConfigDict(frozen=True)

    version: str
    status: VersionStatus
    reason: str | None
    current: bool
    metadata: CheckpointMetadata


def registry_version(sequence: int, content_hash: str) -> str:
    return f"v{sequence:04d}-{content_hash[:8]}"


def version_sequence(version: str) -> int:
    match = VERSION_PATTERN.fullmatch(version)
    if match is None:
        raise RegistryError(f"not a registry version: {version!r} (expected e.g. v0007-3fa2c91b)")
    return int(match.group(1))


class Registry:
    """Versions, statuses and the current pointer on a `BlobStore`. Blocking: call it from a
    worker thread in async code."""

    def __init__(
        self,
        store: BlobStore,
        *,
        owner: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.owner = owner or f"registry-{uuid.uuid4().hex[:12]}"
        self._ttl = timedelta(seconds=lease_ttl_s)
        self._clock = clock
        self._token: str | None = None  # set while this registry holds the lease
        self._lock = threading.RLock()  # one writing call at a time per instance

    # -- reading ------------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Complete versions (metadata written), oldest first."""
        names = {key.split("/")[1] for key in self.store.list("versions/") if key.endswith("/" + METADATA_FILE)}
        return sorted((n for n in names if VERSION_PATTERN.fullmatch(n)), key=version_sequence)

    def metadata(self, version: str) -> CheckpointMetadata:
        key = f"versions/{self._known(version)}/{METADATA_FILE}"
        try:
            return parse_metadata(self.store.get(key), source=key)
        except BlobNotFound as exc:
            raise RegistryError(f"unknown version {version!r}") from exc

    def status(self, version: str) -> VersionState:
        try:
            return VersionState.model_validate_json(self.store.get(f"status/{self._known(version)}.json"))
        except BlobNotFound:
            return VersionState(status="candidate")
        except ValidationError as exc:
            raise RegistryError(f"bad status record of {version}: {exc}") from exc

    def current_version(self) -> str | None:
        pointer = self._pointer()
        return pointer.version if pointer else None

    def list_versions(self) -> list[VersionRecord]:
        current = self.current_version()
        records = []
        for version in self.versions():
            try:
                metadata = self.metadata(version)
            except CheckpointIntegrityError as exc:
                log.warning("skipping version %s with unreadable metadata: %s", version, exc)
                continue
            state = self.status(version)
            records.append(
                VersionRecord(
                    version=version,
                    status=state.status,
                    reason=state.reason,
                    current=version == current,
                    metadata=metadata,
                )
            )
        return records

    def fetch(self, version: str, dest: Path) -> Path:
        """Download `version` into the directory `dest` (absent or empty) and verify every file's
        hash. Raises `CheckpointIntegrityError` and leaves nothing at `dest` if it does not match."""
        metadata = self.metadata(version)
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise RegistryError(f"cannot fetch {version} into {dest}: it exists and is not an empty directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{version}-", dir=dest.parent))
        try:
            for name in metadata.files:
                target = staging / _safe_relative(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    target.write_bytes(self.store.get(f"versions/{version}/{name}"))
                except BlobNotFound as exc:
                    raise CheckpointIntegrityError(f"version {version} is missing {name} in the registry") from exc
            save_metadata(staging, metadata)
            verify_checkpoint(staging)
            if dest.exists():
                dest.rmdir()
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest

    # -- writing ------------------------------------------------------------------------------

    def publish(self, checkpoint_dir: Path, status: VersionStatus = "candidate", *, reason: str | None = None) -> str:
        """Upload a verified checkpoint as a new immutable version and return its id. The same
        content published again returns the version it already has (promoted if asked to)."""
        metadata = verify_checkpoint(Path(checkpoint_dir))
        with self._writing():
            digest = metadata.content_hash
            same = [v for v in self.versions() if v.endswith(digest[:8]) and self.metadata(v).content_hash == digest]
            if same:
                log.info("checkpoint %s is already published as %s", checkpoint_dir, same[0])
                if status == "promoted" and self.current_version() != same[0]:
                    self._set_current(same[0])
                return same[0]
            version = registry_version(self._next_sequence(), metadata.content_hash)
            if self.store.exists(f"versions/{version}/{METADATA_FILE}"):
                raise RegistryError(f"version {version} already exists; versions are never overwritten")
            for name in metadata.files:
                self.store.put(f"versions/{version}/{name}", (Path(checkpoint_dir) / name).read_bytes())
            label = metadata.label or (metadata.version if metadata.version != version else None)
            published = metadata.model_copy(update={"version": version, "label": label})
            initial = "candidate" if status == "promoted" else status
            self._put_state(version, VersionState(status=initial, reason=reason, updated_at=self._clock()))
            self.store.put(f"versions/{version}/{METADATA_FILE}", published.to_json())  # now it exists
            if status == "promoted":
                self._set_current(version)
        log.info("published %s (saved as %s)", version, metadata.version)
        return version

    def promote(self, version: str, *, reason: str | None = None) -> None:
        """Make `version` the serving one. Consumers verify its files when they fetch it."""
        self.metadata(version)
        with self._writing():
            self._set_current(version, reason=reason)

    def rollback(self, version: str, *, reason: str | None = None) -> str | None:
        """Serve `version` again, an existing version whose files still verify; the version that
        was current is marked `rolled_back`. Returns that previous version."""
        with tempfile.TemporaryDirectory(prefix="battery-ct-verify-") as scratch:
            self.fetch(version, Path(scratch) / "checkpoint")  # refuses a damaged version
        with self._writing():
            previous = self.current_version()
            if previous == version:
                raise RegistryError(f"{version} is already the current version")
            if previous is not None:
                self._put_state(previous, VersionState(status="rolled_back", reason=reason, updated_at=self._clock()))
            self._set_current(version, reason=reason or (f"rollback from {previous}" if previous else "rollback"))
        return previous

    def mark_rejected(self, version: str, reason: str | None = None) -> None:
        self.metadata(version)
        with self._writing():
            if self.current_version() == version:
                raise RegistryError(f"{version} is the current version; roll back before rejecting it")
            self._put_state(version, VersionState(status="rejected", reason=reason, updated_at=self._clock()))

    # -- the writer lease ---------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[Registry]:
        """Hold the writer lease across several calls (renewed by each); released at the end."""
        with self._lock:
            token = self._acquire()
            self._token = token
            try:
                yield self
            finally:
                self._token = None
                self._release(token)

    def lease(self) -> Lease | None:
        try:
            return Lease.model_validate_json(self.store.get(LEASE_KEY))
        except BlobNotFound:
            return None
        except ValidationError:
            log.warning("unreadable registry lease: treating it as free")
            return None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        with self._lock:
            if self._token is not None:
                self._renew(self._token)
                yield
                return
            token = self._acquire()
            self._token = token
            try:
                yield
            finally:
                self._token = None
                self._release(token)

    def _acquire(self) -> str:
        now = self._clock()
        held = self.lease()
        if held is not None and held.owner != self.owner and held.expires_at > now:
            raise RegistryConflict(
                f"the registry is being written by {held.owner} (lease until {held.expires_at.isoformat()})"
            )
        token = uuid.uuid4().hex
        self._put_lease(token, now)
        self._check_lease(token)
        return token

    def _renew(self, token: str) -> None:
        self._check_lease(token)
        self._put_lease(token, self._clock())

    def _put_lease(self, token: str, now: datetime) -> None:
        lease = Lease(owner=self.owner, token=token, expires_at=now + self._ttl)
        self.store.put(LEASE_KEY, lease.model_dump_json().encode())

    def _check_lease(self, token: str) -> None:
        held = self.lease()
        if held is None or held.token != token:
            owner = held.owner if held else "nobody"
            raise RegistryConflict(f"lost the registry's writer lease to {owner}")

    def _release(self, token: str) -> None:
        held = self.lease()
        if held is not None and held.token == token:
            self.store.delete(LEASE_KEY)

    # -- helpers ------------------------------------------------------------------------------

    def _known(self, version: str) -> str:
        version_sequence(version)  # also refuses anything that is not a plain version id
        return version

    def _pointer(self) -> CurrentPointer | None:
        try:
            return CurrentPointer.model_validate_json(self.store.get(CURRENT_KEY))
        except BlobNotFound:
            return None
        except ValidationError as exc:
            raise RegistryError(f"bad current pointer: {exc}") from exc

    def _next_sequence(self) -> int:
        # Half-written versions count too: their numbers are never handed out twice.
        names = {key.split("/")[1] for key in self.store.list("versions/") if key.count("/") >= 2}
        sequences = [int(m.group(1)) for n in names if (m := VERSION_PATTERN.fullmatch(n))]
        return max(sequences, default=0) + 1

    def _put_state(self, version: str, state: VersionState) -> None:
        self.store.put(f"status/{version}.json", state.model_dump_json().encode())

    def _set_current(self, version: str, *, reason: str | None = None) -> None:
        previous = self.current_version()
        self._put_state(version, VersionState(status="promoted", reason=reason, updated_at=self._clock()))
        if self._token is not None:  # the last moment another writer could have taken over
            self._check_lease(self._token)
        pointer = CurrentPointer(version=version, previous=previous, updated_at=self._clock(), owner=self.owner)
        self.store.put(CURRENT_KEY, pointer.model_dump_json().encode())  # the pointer last


def _safe_relative(name: str) -> Path:
    """A file name from metadata as a path that stays inside the checkpoint directory."""
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in name.split("/")) or "\\" in name:
        raise CheckpointIntegrityError(f"refusing a checkpoint file name outside its directory: {name!r}")
    return Path(*path.parts)
