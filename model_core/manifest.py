"""A checkpoint's manifest (`manifest.json`) and the registry version name it certifies.

The manifest lists every file of a checkpoint directory with its SHA-256, `metadata.json`
included (so the threshold and everything else in it are covered), and names the checkpoint:

    {"files": {"metadata.json": "<sha256>", "memory.npz": "<sha256>", ...}, "format": 1,
     "version": "v0007-3fa2c91b0d4e5f61"}

written as canonical JSON (sorted keys, no white space, ASCII). Only the manifest itself and its
signature (`manifest.sig`, see `model_core.signing`) are outside it.

Digest and name. `Manifest.digest` is the SHA-256 of the canonical JSON of everything in the
manifest but its name (`files` and `format`); a registry version is
``v<sequence>-<first 16 hex of that digest>``, so the name can be checked against the content
(a name cannot contain a digest of itself, hence the name is left out of the digest). The
signature covers the manifest's exact bytes, name included, so a signed manifest also binds the
sequence number. Before publish `version` is the checkpoint's draft name, which is not checked.

Versions published before manifests existed are named ``v<sequence>-<8 hex>`` from the hash of
the file hashes in `metadata.json` (`checkpoint.content_hash`); the pattern accepts both.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model_core.errors import CheckpointIntegrityError, InvalidVersion

MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
METADATA_FILE = "metadata.json"
ENVELOPE_FILES = frozenset({MANIFEST_FILE, SIGNATURE_FILE})
MANIFEST_FORMAT = 1
VERSION_DIGEST_CHARS = 16
MAX_MANIFEST_BYTES = 1 << 20

# v<sequence>-<hex>: 4+ digits (zero-padded, sorts past 9999 by `version_sequence`), then 8 hex
# (versions published before manifests) or more (the manifest digest's first 16, today).
VERSION_PATTERN = re.compile(r"^v(\d{4,18})-([0-9a-f]{8,64})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_version(version: object) -> str:
    """`version` if it is a registry version name, else `InvalidVersion` (code
    ``invalid_version``). Call it before building any key or path from a version."""
    if not isinstance(version, str) or VERSION_PATTERN.fullmatch(version) is None:
        shown = repr(version)[:80]
        raise InvalidVersion(f"not a registry version: {shown} (expected e.g. v0007-3fa2c91b0d4e5f61)")
    return version


def is_registry_version(name: str) -> bool:
    return VERSION_PATTERN.fullmatch(name) is not None


def version_sequence(version: str) -> int:
    """The sequence number of a registry version (raises `InvalidVersion` for anything else)."""
    match = VERSION_PATTERN.fullmatch(check_version(version))
    assert match is not None
    return int(match.group(1))


def version_hash(version: str) -> str:
    """The hex part of a registry version: a prefix of its manifest digest (or, for versions
    published before manifests, of the legacy content hash)."""
    match = VERSION_PATTERN.fullmatch(check_version(version))
    assert match is not None
    return match.group(2)


def registry_version(sequence: int, digest: str) -> str:
    """The name of the `sequence`-th version with manifest digest `digest`."""
    return f"v{sequence:04d}-{digest[:VERSION_DIGEST_CHARS]}"


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def safe_relative(name: str) -> Path:
    """A file name from a manifest or metadata as a path that stays inside the checkpoint
    directory; raises `CheckpointIntegrityError` for anything else."""
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", ".", "") for part in name.split("/"))
    ):
        raise CheckpointIntegrityError(f"refusing a checkpoint file name outside its directory: {name!r}")
    return Path(*path.parts)


class Manifest(BaseModel):
    """What `manifest.json` holds: the checkpoint's name and every file's SHA-256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = Field(MANIFEST_FORMAT, description="Version of the manifest format")
    version: str = Field(min_length=1, max_length=64, description="Registry version, or the draft name")
    files: dict[str, str] = Field(description="Every file but the manifest and its signature -> SHA-256 hex")

    @field_validator("files")
    @classmethod
    def _every_file_is_inside_and_hashed(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            safe_relative(name)
            if name in ENVELOPE_FILES:
                raise ValueError(f"{name} cannot be listed in the manifest")
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"the hash of {name!r} is not a SHA-256 hex digest")
        if METADATA_FILE not in files:
            raise ValueError(f"the manifest does not list {METADATA_FILE}")
        return files

    @classmethod
    def parse(cls, data: bytes, *, source: str) -> Self:
        """The manifest in `data`, or `CheckpointIntegrityError` when it is not one."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise CheckpointIntegrityError(f"manifest {source} is too large", reason="not_a_checkpoint")
        try:
            manifest = cls.model_validate_json(data)
        except (ValidationError, CheckpointIntegrityError) as exc:
            raise CheckpointIntegrityError(f"bad manifest {source}: {exc}", reason="not_a_checkpoint") from exc
        if manifest.format != MANIFEST_FORMAT:
            raise CheckpointIntegrityError(
                f"manifest {source} has format {manifest.format}, expected {MANIFEST_FORMAT}",
                reason="not_a_checkpoint",
            )
        return manifest

    def to_bytes(self) -> bytes:
        """The canonical JSON that `manifest.json` holds and the signature covers."""
        return canonical_json(self.model_dump(mode="json"))

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the manifest without its name."""
        return hashlib.sha256(canonical_json({"format": self.format, "files": self.files})).hexdigest()

    @property
    def model_files(self) -> dict[str, str]:
        """The files other than `metadata.json` (what the metadata's own `files` lists)."""
        return {name: digest for name, digest in self.files.items() if name != METADATA_FILE}

    def check_name(self, *, source: str) -> None:
        """Refuse (``name_mismatch``) a manifest named as a registry version whose hash part is
        not the start of its digest, or shorter than the `VERSION_DIGEST_CHARS` that every version
        with a manifest has (8 hex are for versions published before manifests). A draft name is
        not checked."""
        if not is_registry_version(self.version):
            return
        named = version_hash(self.version)
        if len(named) < VERSION_DIGEST_CHARS or not self.digest.startswith(named):
            raise CheckpointIntegrityError(
                f"version {self.version} does not match its manifest in {source} (digest {self.digest[:16]}...)",
                reason="name_mismatch",
            )
