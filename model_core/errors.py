"""The errors of `model_core`: one root, typed subclasses, a `retriable` flag and a machine `code`.

`retriable` separates transient failures (retry, never dead-letter) from poison input
(dead-letter with `code` as the reason). Everything in `model_core` is pure, so almost nothing
here is transient; the registry marks store failures that a retry may fix.
"""

from __future__ import annotations

from typing import Literal

ImageErrorCode = Literal["image_empty", "image_truncated", "image_not_an_image", "image_too_large", "image_unsupported"]
IntegrityReason = Literal[
    "not_a_checkpoint",  # no directory, no metadata, unreadable metadata or manifest
    "files_changed",  # a file is missing, extra or not the one the manifest (or legacy metadata) lists
    "name_mismatch",  # the version name's hash is not the manifest's digest
    "unsigned",  # a verification key is configured and the checkpoint has no signature (or no manifest)
    "bad_signature",  # the signature is malformed or does not match the manifest
    "unknown_key",  # signed, but by a key that is not a configured verification key
]


class ModelCoreError(Exception):
    """Root of every error raised by `model_core`."""

    code: str = "model_core_error"

    def __init__(self, message: str, *, retriable: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        if code is not None:
            self.code = code


class ImageDecodeError(ModelCoreError):
    """The bytes are not an image we can score: never retriable, the same bytes fail again."""

    code: ImageErrorCode

    def __init__(self, message: str, *, code: ImageErrorCode) -> None:
        super().__init__(message, retriable=False, code=code)


class CheckpointError(ModelCoreError):
    """A checkpoint cannot be written or loaded."""

    code = "checkpoint_error"


class CheckpointIntegrityError(CheckpointError):
    """A checkpoint is not what its manifest, its version name or its signature say it is, and
    must never be served. `reason` says which check failed, in a word fit for a metric label."""

    code = "checkpoint_integrity"

    def __init__(self, message: str, *, reason: IntegrityReason = "files_changed") -> None:
        super().__init__(message)
        self.reason: IntegrityReason = reason


class InvalidKeyError(ModelCoreError):
    """A signing or verification key cannot be read (not base64 of 32 bytes nor an Ed25519 PEM),
    or the keys given do not belong together. A configuration error: never retriable."""

    code = "invalid_key"


class RegistryError(ModelCoreError):
    """The registry refuses an operation (unknown version, bad state) or its store failed."""

    code = "registry_error"


class RegistryConflict(RegistryError):  # noqa: N818 - the name the architecture gives it
    """Another writer holds the registry's writer lease; retry later rather than race it."""

    code = "registry_conflict"

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class InvalidVersion(RegistryError):  # noqa: N818 - reads as the refusal it is
    """A name that is not a registry version (``v<sequence>-<hex digest>``): refused before any
    key or path is built from it."""

    code = "invalid_version"


class BlobNotFound(RegistryError):  # noqa: N818 - mirrors KeyError/FileNotFoundError
    """A `BlobStore` has no object under the key asked for."""

    code = "blob_not_found"
