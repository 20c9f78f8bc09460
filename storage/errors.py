"""Errors of the storage package. `retriable` separates a store that is down (retry, never dead-letter)
from a request that can never succeed (the object is missing or too large: dead-letter with the reason)."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every storage error; `code` is a short stable reason (metrics, dead letters, HTTP bodies)."""

    code = "storage_error"

    def __init__(self, message: str, *, retriable: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        if code is not None:
            self.code = code


class ObjectMissing(StorageError):  # noqa: N818 (named by the architecture's contract)
    """The bucket or the object does not exist."""

    code = "object_missing"

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class ObjectTooLarge(StorageError):  # noqa: N818
    """The object is larger than the caller accepts."""

    code = "object_too_large"

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class ObjectForbidden(StorageError):  # noqa: N818
    """The store refuses this service access to the object (AccessDenied): poison, never retried."""

    code = "access_denied"

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


class StoreUnavailable(StorageError):  # noqa: N818
    """The store cannot be used right now: connection refused, timeout, 5xx, or invalid credentials."""

    code = "store_unavailable"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, retriable=True, code=code)


class UrlNotAllowed(StorageError):  # noqa: N818
    """An image URL outside the policy (other hosts, other schemes, private addresses, traversal, ...)."""

    code = "url_not_allowed"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, retriable=False, code=code)
