"""The errors of `model_core`: one root, typed subclasses, a `retriable` flag and a machine `code`.

`retriable` separates transient failures (retry, never dead-letter) from poison input
(dead-letter with `code` as the reason). Everything in `model_core` is pure, so almost nothing
here is transient; the registry marks store failures that a retry may fix.
"""

from __future__ import annotations

from typing import Literal

ImageErrorCode = Literal["image_empty", "image_truncated", "image_not_an_image", "image_too_large", "image_unsupported"]


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
    """A checkpoint's files do not match the hashes in its metadata (missing, extra or changed)."""

    code = "checkpoint_integrity"


class RegistryError(ModelCoreError):
    """The registry refuses an operation (unknown version, bad state) or its store failed."""

    code = "registry_error"


class RegistryConflict(RegistryError):  # noqa: N818 - the name the architecture gives it
    """Another writer holds the registry's writer lease; retry later rather than race it."""

    code = "registry_conflict"

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class BlobNotFound(RegistryError):  # noqa: N818 - mirrors KeyError/FileNotFoundError
    """A `BlobStore` has no object under the key asked for."""

    code = "blob_not_found"
