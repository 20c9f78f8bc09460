"""The checkpoint format: one directory of model files plus `metadata.json` that hashes them all.

The format does not care what the model files are (the detector writes them); it only
guarantees that what is loaded is exactly what was trained: `write_metadata` records the
SHA-256 of every other file in the directory, `verify_checkpoint` refuses a directory with a
missing, extra or changed file, or metadata it cannot read.

Names. A checkpoint has one version, the registry's, and before that a draft name:
- `version` in the metadata written at train time is a *draft name*, made by `draft_name` and
  nowhere else: ``draft-<UTC time>Z[-<source>]``, never mistaken for a version. Once published
  it is kept as `label` (checkpoints published before draft names carry the trainer's timestamp
  ``v<time>Z[-<batch>]`` there instead).
- The registry assigns the version at publish time: ``v<sequence>-<content hash>``, e.g.
  ``v0007-3fa2c91b``: readable, sortable by sequence, and tied to the content (the first 8 hex
  of `content_hash`, the hash of the file hashes). The registry rewrites `metadata.json` with it;
  `metadata.json` is not among the hashed files, so that rewrite leaves the checkpoint valid.
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

METADATA_FILE = "metadata.json"
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
    version: str = Field(min_length=1, max_length=64, description="Registry version, or the draft name before publish")
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
    files: dict[str, str] = Field(default_factory=dict, description="Relative file name -> SHA-256 hex")
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
        """SHA-256 over the sorted (name, hash) pairs: equal for byte-identical checkpoints."""
        return content_hash(self.files)

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


def checkpoint_files(checkpoint_dir: Path) -> dict[str, Path]:
    """Every file of a checkpoint except its metadata, by relative POSIX name. Symbolic links are
    refused: a checkpoint must be self-contained, not point at files elsewhere."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        raise CheckpointIntegrityError(f"not a checkpoint directory: {root}")
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise CheckpointIntegrityError(f"checkpoint {root} contains a symbolic link: {path.relative_to(root)}")
        if path.is_file() and path.relative_to(root).as_posix() != METADATA_FILE:
            found[path.relative_to(root).as_posix()] = path
    return found


def write_metadata(checkpoint_dir: Path, metadata: CheckpointMetadata) -> CheckpointMetadata:
    """Hash every other file in `checkpoint_dir` and write `metadata.json` (atomically).
    Returns the metadata as written, with `files` filled in."""
    root = Path(checkpoint_dir)
    files = {name: file_sha256(path) for name, path in checkpoint_files(root).items()}
    if not files:
        raise CheckpointError(f"checkpoint {root} has no model files to describe")
    written = metadata.model_copy(update={"files": files})
    save_metadata(root, written)
    return written


def save_metadata(checkpoint_dir: Path, metadata: CheckpointMetadata) -> None:
    """Write `metadata.json` as is, via a temporary file so a reader never sees half of it."""
    root = Path(checkpoint_dir)
    handle, temporary = tempfile.mkstemp(prefix=".metadata-", suffix=".tmp", dir=root)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(metadata.to_json())
        os.replace(temporary, root / METADATA_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def parse_metadata(data: bytes, *, source: str) -> CheckpointMetadata:
    try:
        return CheckpointMetadata.model_validate_json(data)
    except ValidationError as exc:
        raise CheckpointIntegrityError(f"bad checkpoint metadata in {source}: {exc}") from exc


def read_metadata(checkpoint_dir: Path) -> CheckpointMetadata:
    """The metadata of a checkpoint, without checking its files (see `verify_checkpoint`)."""
    path = Path(checkpoint_dir) / METADATA_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointIntegrityError(f"checkpoint {checkpoint_dir} has no {METADATA_FILE}") from exc
    return parse_metadata(data, source=str(path))


def verify_checkpoint(checkpoint_dir: Path) -> CheckpointMetadata:
    """The checkpoint's metadata, after checking that its files are exactly the ones it lists,
    byte for byte. Raises `CheckpointIntegrityError` otherwise."""
    root = Path(checkpoint_dir)
    metadata = read_metadata(root)
    if metadata.format_version != FORMAT_VERSION:
        raise CheckpointIntegrityError(
            f"checkpoint {root} has format {metadata.format_version}, expected {FORMAT_VERSION}"
        )
    if not metadata.files:
        raise CheckpointIntegrityError(f"checkpoint {root} lists no files")
    present = checkpoint_files(root)
    missing = sorted(set(metadata.files) - set(present))
    extra = sorted(set(present) - set(metadata.files))
    if missing or extra:
        raise CheckpointIntegrityError(
            f"checkpoint {root} does not match its metadata: missing {missing}, extra {extra}"
        )
    changed = sorted(name for name, path in present.items() if file_sha256(path) != metadata.files[name])
    if changed:
        raise CheckpointIntegrityError(f"checkpoint {root} has files that changed since it was written: {changed}")
    return metadata
