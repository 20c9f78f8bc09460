"""One published version as a registry store holds it, read and checked without its model files.

`read_published` fetches ``versions/<version>/`` `metadata.json`, `manifest.json` and
`manifest.sig` (the name validated before any key is built) and checks, in this order: the
signature over the manifest when verification keys are given, that the manifest names this
version, and that the name matches the manifest's digest. `published_metadata` then checks
that `metadata.json` is the file the manifest lists. Model files are checked by the registry's
`fetch`, on the downloaded copy (`checkpoint.verify_checkpoint`).

A version published before manifests (no `manifest.json`) is refused as ``unsigned`` when
verification keys are given; without them its metadata must name it and match its name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_core.checkpoint import METADATA_FILE, CheckpointMetadata, check_metadata, parse_metadata
from model_core.errors import BlobNotFound, CheckpointIntegrityError, RegistryError
from model_core.manifest import MANIFEST_FILE, SIGNATURE_FILE, Manifest, check_version, version_hash
from model_core.signing import VerifyKey, check_signature

if TYPE_CHECKING:
    from model_core.blob_store import BlobStore


@dataclass(frozen=True)
class PublishedVersion:
    """What the store holds of one version besides its model files, its checks passed."""

    version: str
    metadata: bytes  # metadata.json, exactly as stored
    manifest: Manifest | None  # None: published before manifests
    manifest_bytes: bytes | None
    signature: bytes | None

    @property
    def prefix(self) -> str:
        return f"versions/{self.version}/"


def get_optional(store: BlobStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except BlobNotFound:
        return None


def read_published(store: BlobStore, version: str, trusted: tuple[VerifyKey, ...]) -> PublishedVersion:
    """The stored metadata, manifest and signature of `version`, checked (see the module).
    Raises `InvalidVersion` (before any I/O), `RegistryError` (unknown version) or
    `CheckpointIntegrityError`."""
    prefix = f"versions/{check_version(version)}/"
    metadata = get_optional(store, prefix + METADATA_FILE)
    if metadata is None:
        raise RegistryError(f"unknown version {version!r}")
    raw = get_optional(store, prefix + MANIFEST_FILE)
    if raw is None:
        if trusted:
            raise CheckpointIntegrityError(
                f"unsigned checkpoint: version {version} has no manifest (published before checkpoints were signed)",
                reason="unsigned",
            )
        return PublishedVersion(version, metadata, None, None, None)
    manifest = Manifest.parse(raw, source=prefix + MANIFEST_FILE)
    signature = get_optional(store, prefix + SIGNATURE_FILE)
    check_signature(raw, signature, trusted, source=f"version {version}")
    if manifest.version != version:
        raise CheckpointIntegrityError(
            f"the manifest of version {version} names {manifest.version!r}", reason="name_mismatch"
        )
    manifest.check_name(source=f"the registry's {version}")
    return PublishedVersion(version, metadata, manifest, raw, signature)


def published_metadata(published: PublishedVersion) -> CheckpointMetadata:
    """The version's metadata, under its version name, once `metadata.json` is checked against
    the manifest (or, for a version from before manifests, against its name)."""
    source = published.prefix + METADATA_FILE
    metadata = parse_metadata(published.metadata, source=source)
    if published.manifest is None:
        named = metadata.version == published.version
        if not named or not metadata.content_hash.startswith(version_hash(published.version)):
            raise CheckpointIntegrityError(
                f"version {published.version} does not match its metadata", reason="name_mismatch"
            )
        return metadata
    if hashlib.sha256(published.metadata).hexdigest() != published.manifest.files[METADATA_FILE]:
        raise CheckpointIntegrityError(f"{source} is not the file its manifest lists")
    return check_metadata(metadata, published.manifest, source=f"version {published.version}")
