"""The checkpoint registry: immutable, content-hashed versions on a blob store, a status per
version, a `current` pointer, promotion and rollback, and a single-writer lease.

Layout on the store (the same for a local directory and an S3 bucket):

    versions/<version>/<file>           the checkpoint's files, written once
    versions/<version>/manifest.json    every file's SHA-256, metadata.json included, and the name
    versions/<version>/manifest.sig     the publisher's Ed25519 signature over the manifest
    versions/<version>/metadata.json    written LAST: a version without it is invisible
    status/<version>.json               candidate | promoted | rejected | rolled_back (mutable)
    current.json                        the serving version, written last of all
    lease.json                          the writer lease: owner, token, expiry

Versions are ``v<sequence>-<first 16 hex of the manifest digest>`` (`model_core.manifest`), the
only version a published checkpoint has; the draft name it was saved under (`draft_name`) stays
in the stored `metadata.json` and is returned as `metadata.label`. Publishing the same content
(the same manifest digest) twice returns the existing version: a retry after a crash is safe.
Every method that takes a version refuses a name that is not one (`InvalidVersion`, code
``invalid_version``) before it builds a key or a path from it.

Integrity. `fetch` (and `rollback`, which fetches) downloads a version and refuses it with
`CheckpointIntegrityError` unless its manifest names it, its name matches the manifest's digest,
its files are exactly those of the manifest, and, when the registry is given a verification key,
the manifest carries a valid signature by that key. `metadata`, `promote` and `list_versions`
check everything but the model files' bytes. `publish` signs the manifest when the registry is
given a signing key. Versions published before manifests (no `manifest.json`) are still read
and fetched when no verification key is configured (their files checked against their metadata,
their name against its content hash, as before) and are refused as ``unsigned`` when one is.

Single writer. Every mutating call takes the writer lease (or renews it when this registry
holds it via `writer()`), so a second writer gets `RegistryConflict` instead of interleaving
pointer updates. A crashed writer's lease expires after `lease_ttl_s`. Plain S3 has no
compare-and-swap, so the lease is written and read back. The residual race: two writers that
both read "no lease", then each write and read back its own lease before the other's write
lands, both go ahead. Each re-checks the lease just before writing the pointer, which narrows
that window to milliseconds but cannot close it on a store without conditional writes. Readers
are never affected: they only see complete versions and a pointer to one.

No S3 code here: `storage.registry_store.S3BlobStore` implements `BlobStore` (`model_core.blob_store`,
re-exported here with `LocalBlobStore`) on S3. `model_core.published` reads and checks one
version's metadata, manifest and signature.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_core.blob_store import BlobStore as BlobStore
from model_core.blob_store import LocalBlobStore as LocalBlobStore
from model_core.blob_store import check_key as check_key
from model_core.checkpoint import METADATA_FILE, CheckpointMetadata, checkpoint_files, parse_metadata, verify_checkpoint
from model_core.errors import BlobNotFound, CheckpointIntegrityError, InvalidKeyError, RegistryConflict, RegistryError
from model_core.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, check_version, safe_relative, version_hash
from model_core.manifest import VERSION_PATTERN as VERSION_PATTERN
from model_core.manifest import registry_version as registry_version
from model_core.manifest import version_sequence as version_sequence
from model_core.published import published_metadata, read_published
from model_core.signing import SigningKey, VerifyKeys, trusted_keys

log = logging.getLogger(__name__)

VersionStatus = Literal["candidate", "promoted", "rejected", "rolled_back"]
CURRENT_KEY = "current.json"
LEASE_KEY = "lease.json"
DEFAULT_LEASE_TTL_S = 60.0


class VersionState(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: VersionStatus = "candidate"
    reason: str | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class CurrentPointer(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str = Field(pattern=VERSION_PATTERN.pattern)
    previous: str | None = Field(None, pattern=VERSION_PATTERN.pattern)
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


class Registry:
    """Versions, statuses and the current pointer on a `BlobStore`. Blocking: call it from a
    worker thread in async code.

    `signer`: the signing key (`model_core.signing.load_signing_key`) of a publishing process
    (the retrain consumer, an operator's import); `publish` signs every manifest with it.
    `verify_key`: the verification key, or several (`load_verify_keys`), of every process that
    reads or serves versions; then `fetch`, `rollback`, `promote`, `metadata` and `list_versions`
    accept only versions signed by one of them. Without it, signatures are not checked (for
    development; manifests and names still are). A registry given both refuses a signing key
    whose public half is not among the verification keys, and one given only a verification key
    refuses to publish (every loader would refuse what it published)."""

    def __init__(
        self,
        store: BlobStore,
        *,
        owner: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        signer: SigningKey | None = None,
        verify_key: VerifyKeys = None,
    ) -> None:
        self._signer = signer
        self._trusted = trusted_keys(verify_key)
        if signer is not None and self._trusted and signer.key_id not in {k.key_id for k in self._trusted}:
            raise InvalidKeyError(
                f"the signing key {signer.key_id} does not belong to the verification key(s) "
                f"{', '.join(k.key_id for k in self._trusted)}: every version it signs would be refused"
            )
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
        """The metadata of `version` (under that version, its draft name as `label`), after the
        checks that need no model file: the manifest names `version`, matches its name and, with
        a verification key, is signed; `metadata.json` is the file the manifest lists. Raises
        `InvalidVersion`, `RegistryError` (unknown version) or `CheckpointIntegrityError`."""
        return published_metadata(read_published(self.store, version, self._trusted))

    def status(self, version: str) -> VersionState:
        key = f"status/{check_version(version)}.json"
        try:
            return VersionState.model_validate_json(self.store.get(key))
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
                log.warning("skipping version %s, refused (%s): %s", version, exc.reason, exc)
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
        """Download `version` into the directory `dest` (absent or empty), manifest and signature
        included, and verify it (`verify_checkpoint` with this registry's verification key).
        Raises `CheckpointIntegrityError` and leaves nothing at `dest` if it does not match; the
        signature and name are checked before any model file is downloaded."""
        published = read_published(self.store, version, self._trusted)
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise RegistryError(f"cannot fetch {version} into {dest}: it exists and is not an empty directory")
        if published.manifest is not None:
            names = [name for name in published.manifest.files if name != METADATA_FILE]
        else:
            names = list(parse_metadata(published.metadata, source=f"version {version}").files)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{version}-", dir=dest.parent))
        try:
            for name in names:
                target = staging / safe_relative(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    target.write_bytes(self.store.get(f"versions/{version}/{name}"))
                except BlobNotFound as exc:
                    raise CheckpointIntegrityError(f"version {version} is missing {name} in the registry") from exc
            (staging / METADATA_FILE).write_bytes(published.metadata)
            if published.manifest_bytes is not None:
                (staging / MANIFEST_FILE).write_bytes(published.manifest_bytes)
            if published.signature is not None:
                (staging / SIGNATURE_FILE).write_bytes(published.signature)
            verified = verify_checkpoint(staging, self._trusted)
            if verified.version != version:
                raise CheckpointIntegrityError(
                    f"version {version} holds a checkpoint named {verified.version!r}", reason="name_mismatch"
                )
            if dest.exists():
                dest.rmdir()
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return dest

    # -- writing ------------------------------------------------------------------------------

    def publish(self, checkpoint_dir: Path, status: VersionStatus = "candidate", *, reason: str | None = None) -> str:
        """Upload a verified checkpoint as a new immutable version and return its name. The
        manifest (every file, `metadata.json` included, which is uploaded as it is) is built from
        the bytes uploaded, named ``v<sequence>-<digest>`` and signed with this registry's signing
        key. The same content (manifest digest) published again returns the version it already
        has (promoted if asked to). Raises `RegistryError` when the registry verifies signatures
        but has no signing key."""
        if self._trusted and self._signer is None:
            raise RegistryError(
                "this registry verifies signatures but holds no signing key: what it published would be refused"
            )
        root = Path(checkpoint_dir)
        metadata = verify_checkpoint(root)  # the checkpoint as trained (a draft is unsigned)
        blobs = {name: path.read_bytes() for name, path in checkpoint_files(root).items()}
        blobs[METADATA_FILE] = (root / METADATA_FILE).read_bytes()
        files = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
        if {n: d for n, d in files.items() if n != METADATA_FILE} != metadata.files:
            raise CheckpointIntegrityError(f"checkpoint {root} changed while it was being published")
        digest = Manifest(version="unnamed", files=files).digest
        with self._writing():
            same = self._published_with(digest)
            if same is not None:
                log.info("checkpoint %s is already published as %s", checkpoint_dir, same)
                if status == "promoted" and self.current_version() != same:
                    self._set_current(same)
                return same
            version = registry_version(self._next_sequence(), digest)
            prefix = f"versions/{version}/"
            if self.store.exists(prefix + METADATA_FILE):
                raise RegistryError(f"version {version} already exists; versions are never overwritten")
            manifest = Manifest(version=version, files=files).to_bytes()
            for name, data in blobs.items():
                if name != METADATA_FILE:
                    self.store.put(prefix + name, data)
            self.store.put(prefix + MANIFEST_FILE, manifest)
            if self._signer is not None:
                self.store.put(prefix + SIGNATURE_FILE, self._signer.sign(manifest))
            initial = "candidate" if status == "promoted" else status
            self._put_state(version, VersionState(status=initial, reason=reason, updated_at=self._clock()))
            self.store.put(prefix + METADATA_FILE, blobs[METADATA_FILE])  # now it exists
            if status == "promoted":
                self._set_current(version)
        signed = f"signed by {self._signer.key_id}" if self._signer is not None else "unsigned"
        log.info("published %s (saved as %s, %s)", version, metadata.version, signed)
        return version

    def promote(self, version: str, *, reason: str | None = None) -> None:
        """Make `version` the serving one (after `metadata`'s checks). Consumers verify its files
        when they fetch it."""
        self.metadata(version)
        with self._writing():
            self._set_current(version, reason=reason)

    def rollback(self, version: str, *, reason: str | None = None) -> str | None:
        """Serve `version` again, an existing version whose files still verify; the version that
        was current is marked `rolled_back`. Returns that previous version."""
        check_version(version)
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
        """Mark `version` rejected; a version refused by the integrity checks may be rejected too."""
        if not self.store.exists(f"versions/{check_version(version)}/{METADATA_FILE}"):
            raise RegistryError(f"unknown version {version!r}")
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

    def _published_with(self, digest: str) -> str | None:
        """A complete version whose manifest has `digest` and passes this registry's checks."""
        for version in self.versions():
            if not digest.startswith(version_hash(version)):
                continue
            try:
                published = read_published(self.store, version, self._trusted)
                published_metadata(published)
            except CheckpointIntegrityError as exc:
                log.warning("not reusing version %s, refused (%s): %s", version, exc.reason, exc)
                continue
            signed_enough = self._signer is None or published.signature is not None
            if published.manifest is not None and published.manifest.digest == digest and signed_enough:
                return version
        return None

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
