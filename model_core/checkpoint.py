"""The checkpoint format: one directory of model files, `metadata.json`, and a manifest over both.

The format does not care what the model files are (the detector writes them); it only
guarantees that what is loaded is exactly what was trained and published:
- `write_metadata` records the SHA-256 of every model file in `metadata.json`, then writes
  `manifest.json` (`model_core.manifest`): the SHA-256 of every file, `metadata.json` included,
  so the threshold is as covered as the weights;
- `verify_checkpoint(dir, verify_key=...)` refuses a directory with a missing, extra or changed
  file, metadata it cannot read, a registry version name that does not match the manifest's
  digest, and, when a verification key is configured, a manifest without a valid signature
  (`manifest.sig`, `model_core.signing`). Every refusal is a `CheckpointIntegrityError` whose
  `reason` says which check failed.

Names. A checkpoint has one version, the registry's, and before that a draft name:
- `version` in the metadata written at train time is a *draft name*, made by `draft_name` and
  nowhere else: ``draft-<UTC time>Z[-<source>]``, never mistaken for a version. `metadata.json`
  is never rewritten after that (it is covered by the manifest).
- The registry assigns the version at publish time: ``v<sequence>-<manifest digest>``, e.g.
  ``v0007-3fa2c91b0d4e5f61``: readable, sortable by sequence, and tied to the content (the first
  16 hex of `Manifest.digest`). It is the manifest's `version`; `verify_checkpoint` and
  `read_metadata` return the metadata under that version, with the draft name as `label`.

Checkpoints made before manifests (no `manifest.json`): `metadata.json` lists the model files
and, once published, names its registry version ``v<sequence>-<first 8 hex of content_hash>``.
They still verify when no verification key is configured (files against `metadata.files`, the
name against `content_hash`; `metadata.json` itself is not covered), and are refused as
``unsigned`` when one is.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from model_core.errors import CheckpointError, CheckpointIntegrityError
from model_core.manifest import ENVELOPE_FILES, Manifest, is_registry_version, version_hash
from model_core.manifest import MANIFEST_FILE as MANIFEST_FILE
from model_core.manifest import METADATA_FILE as METADATA_FILE
from model_core.manifest import SIGNATURE_FILE as SIGNATURE_FILE
from model_core.signing import VerifyKeys, check_signature, trusted_keys

FORMAT_VERSION = 1
DRAFT_PREFIX = "draft-"
_CHUNK = 1 << 20
_SOURCE_CHARS = 8


def draft_name(*, source: str | None = None, created_at: datetime | None = None) -> str:
    """The name of a checkpoint no registry has published yet: ``draft-<UTC time to the
    microsecond>Z``, plus ``-<source>`` (its first 8 ASCII letters and digits) when given, e.g.
    ``draft-20260102T030405123456Z-3fa2c91b`` for the batch ``3fa2c91b-...``. Drafts sort by
    creation time, are safe as a directory name, and never match a registry version."""
    when = (created_at or datetime.now(UTC)).astimezone(UTC)
    name = f"{DRAFT_PREFIX}{when:%Y%m%dT%H%M%S%f}Z"
    tag = "".join(ch for ch in source or "" if ch.isascii() and ch.isalnum())[:_SOURCE_CHARS]
    return f"{name}-{tag}" if tag else name


def is_draft(name: str) -> bool:
    """Whether `name` is a draft name (`draft_name`), not a registry version."""
    return name.startswith(DRAFT_PREFIX)


class DatasetSnapshot(BaseModel):
    """What a checkpoint was trained on: enough to reproduce or audit the training set."""

    model_config = ConfigDict(frozen=True)

    sample_ids: list[str] = Field(default_factory=list, description="Ids of the training scans, sorted")
    n_normal: int = Field(0, ge=0)
    n_defect: int = Field(0, ge=0)
    content_hash: str = Field("", description="SHA-256 of the sorted sample ids, one per line")

    @classmethod
    def of(cls, sample_ids: Iterable[str], *, n_normal: int | None = None, n_defect: int = 0) -> Self:
        ids = sorted(sample_ids)
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
        normal = len(ids) - n_defect if n_normal is None else n_normal
        return cls(sample_ids=ids, n_normal=max(normal, 0), n_defect=n_defect, content_hash=digest)


class CheckpointMetadata(BaseModel):
    """`metadata.json` of a checkpoint: the threshold travels with the model it belongs to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    format_version: int = Field(FORMAT_VERSION, description="Version of this checkpoint format")
    version: str = Field(
        min_length=1,
        max_length=64,
        description="As stored: the draft name; as returned by verify_checkpoint and the registry: the version",
    )
    label: str | None = Field(None, max_length=64, description="The draft name it was saved under before publish")
    parent: str | None = Field(None, max_length=64, description="Version it was warm-started from")
    created_at: datetime
    threshold: float
    threshold_rule: str = Field("", description="Which rule set the threshold, in words")
    validation_error: float | None = None
    anomaly_error: float | None = None
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    dataset: DatasetSnapshot = Field(default_factory=DatasetSnapshot)
    image_size: int = Field(ge=1)
    code_version: str = ""
    files: dict[str, str] = Field(
        default_factory=dict, description="Relative name of every model file (all but metadata and manifest) -> SHA-256"
    )
    extra: dict[str, JsonValue] = Field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        version: str,
        threshold: float,
        image_size: int,
        created_at: datetime | None = None,
        parent: str | None = None,
        threshold_rule: str = "",
        validation_error: float | None = None,
        anomaly_error: float | None = None,
        metrics: Mapping[str, JsonValue] | None = None,
        sample_ids: Iterable[str] = (),
        n_normal: int | None = None,
        n_defect: int = 0,
        extra: Mapping[str, JsonValue] | None = None,
    ) -> Self:
        """Metadata for a new checkpoint; `files` is filled in by `write_metadata`."""
        return cls(
            version=version,
            parent=parent,
            created_at=created_at or datetime.now(UTC),
            threshold=threshold,
            threshold_rule=threshold_rule,
            validation_error=validation_error,
            anomaly_error=anomaly_error,
            metrics=dict(metrics or {}),
            dataset=DatasetSnapshot.of(sample_ids, n_normal=n_normal, n_defect=n_defect),
            image_size=image_size,
            code_version=code_version(),
            extra=dict(extra or {}),
        )

    @property
    def content_hash(self) -> str:
        """SHA-256 over the sorted (name, hash) pairs of the model files: equal for byte-identical
        models whatever their metadata (the hash in versions published before manifests)."""
        return content_hash(self.files)

    def published_as(self, version: str) -> Self:
        """This metadata under `version`, the draft name it was stored with kept as `label`."""
        if version == self.version:
            return self
        return self.model_copy(update={"version": version, "label": self.label or self.version})

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


def content_hash(files: Mapping[str, str]) -> str:
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    try:
        version = package_metadata.version("battery-ct")
    except package_metadata.PackageNotFoundError:
        version = "unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{sha}" if sha else version


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> dict[str, Path]:
    """Every regular file under `root` by relative POSIX name; symbolic links are refused (a
    checkpoint must be self-contained, not point at files elsewhere)."""
    if not root.is_dir():
        raise CheckpointIntegrityError(f"not a checkpoint directory: {root}", reason="not_a_checkpoint")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise CheckpointIntegrityError(f"checkpoint {root} contains a symbolic link: {path.relative_to(root)}")
        if path.is_file():
            found[path.relative_to(root).as_posix()] = path
    return found


def checkpoint_files(checkpoint_dir: Path) -> dict[str, Path]:
    """Every model file of a checkpoint (all but its metadata, manifest and signature), by
    relative POSIX name."""
    skip = ENVELOPE_FILES | {METADATA_FILE}
    return {name: path for name, path in _files(Path(checkpoint_dir)).items() if name not in skip}


def build_manifest(checkpoint_dir: Path, version: str) -> Manifest:
    """A manifest named `version` over every file of the checkpoint, `metadata.json` included."""
    files = {name: file_sha256(path) for name, path in _files(Path(checkpoint_dir)).items()}
    return Manifest(version=version, files={name: d for name, d in files.items() if name not in ENVELOPE_FILES})


def write_metadata(checkpoint_dir: Path, metadata: CheckpointMetadata) -> CheckpointMetadata:
    """Hash every model file in `checkpoint_dir`, write `metadata.json`, then `manifest.json`
    (named `metadata.version`, unsigned: any old signature is removed). Each file is written
    atomically. Returns the metadata as written, with `files` filled in."""
    root = Path(checkpoint_dir)
    files = {name: file_sha256(path) for name, path in checkpoint_files(root).items()}
    if not files:
        raise CheckpointError(f"checkpoint {root} has no model files to describe")
    written = metadata.model_copy(update={"files": files})
    save_metadata(root, written)
    write_manifest(root, build_manifest(root, written.version))
    return written


def write_manifest(checkpoint_dir: Path, manifest: Manifest, signature: bytes | None = None) -> None:
    """Write `manifest.json` and, when given, `manifest.sig` (else remove a stale one)."""
    root = Path(checkpoint_dir)
    (root / SIGNATURE_FILE).unlink(missing_ok=True)
    _write_atomic(root, MANIFEST_FILE, manifest.to_bytes())
    if signature is not None:
        _write_atomic(root, SIGNATURE_FILE, signature)


def save_metadata(checkpoint_dir: Path, metadata: CheckpointMetadata) -> None:
    """Write `metadata.json` as is, via a temporary file so a reader never sees half of it. The
    manifest is not updated: call `write_metadata` for a checkpoint that should still verify."""
    _write_atomic(Path(checkpoint_dir), METADATA_FILE, metadata.to_json())


def _write_atomic(root: Path, name: str, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=root)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, root / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_optional(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def parse_metadata(data: bytes, *, source: str) -> CheckpointMetadata:
    try:
        return CheckpointMetadata.model_validate_json(data)
    except ValidationError as exc:
        raise CheckpointIntegrityError(
            f"bad checkpoint metadata in {source}: {exc}", reason="not_a_checkpoint"
        ) from exc


def read_metadata(checkpoint_dir: Path) -> CheckpointMetadata:
    """The metadata of a checkpoint under the name its manifest gives it, without checking its
    files, name or signature (see `verify_checkpoint`)."""
    root = Path(checkpoint_dir)
    data = _read_optional(root / METADATA_FILE)
    if data is None:
        raise CheckpointIntegrityError(f"checkpoint {root} has no {METADATA_FILE}", reason="not_a_checkpoint")
    metadata = parse_metadata(data, source=str(root / METADATA_FILE))
    manifest = _read_optional(root / MANIFEST_FILE)
    if manifest is None:
        return metadata
    return metadata.published_as(Manifest.parse(manifest, source=str(root / MANIFEST_FILE)).version)


def check_metadata(metadata: CheckpointMetadata, manifest: Manifest, *, source: str) -> CheckpointMetadata:
    """The metadata under the manifest's name, after checking that both list the same model files."""
    _check_format(metadata, source=source)
    if metadata.files != manifest.model_files:
        raise CheckpointIntegrityError(f"the metadata of {source} lists other files than its manifest")
    return metadata.published_as(manifest.version)


def verify_checkpoint(checkpoint_dir: Path, verify_key: VerifyKeys = None) -> CheckpointMetadata:
    """The checkpoint's metadata (under its manifest's name), after checking, in this order:
    the signature over the manifest when `verify_key` is given (one key or several), that a
    registry version name matches the manifest's digest, and that the directory holds exactly
    the files the manifest lists, byte for byte, `metadata.json` included. Raises
    `CheckpointIntegrityError` (with its `reason`) otherwise. A checkpoint without a manifest
    (made before manifests) is refused as ``unsigned`` when a key is given, else checked as
    before (its files against its metadata, its name against `content_hash`)."""
    root = Path(checkpoint_dir)
    present = {name: path for name, path in _files(root).items() if name not in ENVELOPE_FILES}
    manifest_bytes = _read_optional(root / MANIFEST_FILE)
    if manifest_bytes is None:
        return _verify_legacy(root, present, verify_key)
    manifest = Manifest.parse(manifest_bytes, source=str(root / MANIFEST_FILE))
    check_signature(manifest_bytes, _read_optional(root / SIGNATURE_FILE), verify_key, source=str(root))
    manifest.check_name(source=str(root))
    _check_listing(root, set(manifest.files), set(present), by="its manifest")
    metadata_bytes = (root / METADATA_FILE).read_bytes()
    changed = sorted(
        name for name, path in present.items() if name != METADATA_FILE and file_sha256(path) != manifest.files[name]
    )
    if hashlib.sha256(metadata_bytes).hexdigest() != manifest.files[METADATA_FILE]:
        changed.insert(0, METADATA_FILE)
    if changed:
        raise CheckpointIntegrityError(
            f"checkpoint {root} has files that changed since its manifest was written: {changed}"
        )
    return check_metadata(parse_metadata(metadata_bytes, source=str(root / METADATA_FILE)), manifest, source=str(root))


def _check_format(metadata: CheckpointMetadata, *, source: str) -> None:
    if metadata.format_version != FORMAT_VERSION:
        raise CheckpointIntegrityError(
            f"checkpoint {source} has format {metadata.format_version}, expected {FORMAT_VERSION}",
            reason="not_a_checkpoint",
        )
    if not metadata.files:
        raise CheckpointIntegrityError(f"checkpoint {source} lists no files", reason="not_a_checkpoint")


def _check_listing(root: Path, listed: set[str], present: set[str], *, by: str) -> None:
    missing, extra = sorted(listed - present), sorted(present - listed)
    if missing or extra:
        raise CheckpointIntegrityError(f"checkpoint {root} does not match {by}: missing {missing}, extra {extra}")


def _verify_legacy(root: Path, present: dict[str, Path], verify_key: VerifyKeys) -> CheckpointMetadata:
    """A checkpoint made before manifests: acceptable only without a verification key."""
    if trusted_keys(verify_key):
        raise CheckpointIntegrityError(
            f"unsigned checkpoint: {root} has no {MANIFEST_FILE} (made before checkpoints were signed)",
            reason="unsigned",
        )
    metadata = read_metadata(root)
    _check_format(metadata, source=str(root))
    model_files = {name: path for name, path in present.items() if name != METADATA_FILE}
    if (root / SIGNATURE_FILE).exists():
        model_files[SIGNATURE_FILE] = root / SIGNATURE_FILE  # a signature over nothing: an extra file
    _check_listing(root, set(metadata.files), set(model_files), by="its metadata")
    changed = sorted(name for name, path in model_files.items() if file_sha256(path) != metadata.files[name])
    if changed:
        raise CheckpointIntegrityError(f"checkpoint {root} has files that changed since it was written: {changed}")
    if is_registry_version(metadata.version) and not metadata.content_hash.startswith(version_hash(metadata.version)):
        raise CheckpointIntegrityError(
            f"version {metadata.version} does not match the content of {root}", reason="name_mismatch"
        )
    return metadata
