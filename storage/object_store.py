"""ObjectStore: the S3 calls battery-ct makes, through the minio SDK, with typed errors.

No retries here (callers decide: a consumer backs off, the facade answers 503) and short
timeouts, so that an outage is noticed in seconds rather than hidden behind the SDK's retries.
Every minio call passes keyword arguments: the SDK's next major release makes them mandatory.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from storage.errors import ObjectForbidden, ObjectMissing, ObjectTooLarge, StorageError, StoreUnavailable

if TYPE_CHECKING:
    from schemas.settings import Settings


_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound", "NoSuchVersion"})
# Not the message's fault: wrong keys or clock skew are fixed by an operator, then everything works again.
_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "RequestTimeTooSkewed"})
# Valid credentials, but this service may not touch that object (least privilege): the message's fault,
# and retrying it would stall its partition for good.
_FORBIDDEN = frozenset({"AccessDenied", "AllAccessDisabled"})
_CHUNK = 1024 * 1024


class ObjectStore:
    """Blocking S3 operations (run them in a worker thread from async code: see the `a...` twins)."""

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        secure: bool = False,
        region: str | None = None,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        max_connections: int = 16,
    ) -> None:
        self.endpoint = endpoint
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=urllib3.Retry(total=0, redirect=0, raise_on_status=False),
            maxsize=max_connections,
        )
        self._client = Minio(
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: float) -> ObjectStore:
        return cls(
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region,
            **overrides,  # type: ignore[arg-type]
        )

    # -- buckets ---------------------------------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> None:
        """Create `bucket` unless it exists (idempotent; concurrent creators are fine)."""
        with self._errors(f"bucket {bucket}"):
            if self._client.bucket_exists(bucket_name=bucket):
                return
            try:
                self._client.make_bucket(bucket_name=bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    # -- objects ---------------------------------------------------------------------------------

    def put_bytes(self, bucket: str, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> str:
        """Write an object; returns its ETag."""
        with self._errors(f"s3://{bucket}/{key}"):
            result = self._client.put_object(
                bucket_name=bucket, object_name=key, data=io.BytesIO(data), length=len(data), content_type=content_type
            )
        return str(result.etag)

    def get_bytes(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        """Read an object of at most `max_bytes` bytes (checked before the read, and enforced during it)."""
        where = f"s3://{bucket}/{key}"
        with self._errors(where):
            size = self._client.stat_object(bucket_name=bucket, object_name=key).size
            if size is not None and size > max_bytes:
                raise ObjectTooLarge(f"{where} has {size} bytes, more than the {max_bytes} accepted")
            response = self._client.get_object(bucket_name=bucket, object_name=key)
            try:
                # The object may have been replaced by a larger one since the stat: never read past the cap.
                parts, total = [], 0
                while chunk := response.read(min(_CHUNK, max_bytes + 1 - total)):
                    parts.append(chunk)
                    total += len(chunk)
                    if total > max_bytes:
                        raise ObjectTooLarge(f"{where} has more than the {max_bytes} bytes accepted")
                return b"".join(parts)
            finally:
                response.close()
                response.release_conn()

    def size(self, bucket: str, key: str) -> int:
        """The object's size in bytes."""
        with self._errors(f"s3://{bucket}/{key}"):
            return int(self._client.stat_object(bucket_name=bucket, object_name=key).size or 0)

    def get_range(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        """`length` bytes of the object from `offset` (fewer at its end): a ranged GET, so that a
        volume's slices are read without the whole object."""
        where = f"s3://{bucket}/{key}"
        if length <= 0:
            return b""
        with self._errors(where):
            response = self._client.get_object(bucket_name=bucket, object_name=key, offset=offset, length=length)
            try:
                return bytes(response.read(length))
            finally:
                response.close()
                response.release_conn()

    def exists(self, bucket: str, key: str) -> bool:
        """True when the object exists (a missing bucket counts as a missing object)."""
        try:
            with self._errors(f"s3://{bucket}/{key}"):
                self._client.stat_object(bucket_name=bucket, object_name=key)
        except ObjectMissing:
            return False
        return True

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys under `prefix` (recursively), sorted."""
        with self._errors(f"s3://{bucket}/{prefix}"):
            objects = self._client.list_objects(bucket_name=bucket, prefix=prefix or None, recursive=True)
            return sorted(str(o.object_name) for o in objects if o.object_name is not None)

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; removing one that is not there is not an error (S3 semantics)."""
        with self._errors(f"s3://{bucket}/{key}"):
            self._client.remove_object(bucket_name=bucket, object_name=key)

    # -- async twins: the blocking SDK call in a worker thread ---------------------------------------

    async def aget_bytes(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        return await asyncio.to_thread(self.get_bytes, bucket, key, max_bytes=max_bytes)

    async def aput_bytes(
        self, bucket: str, key: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> str:
        return await asyncio.to_thread(self.put_bytes, bucket, key, data, content_type=content_type)

    async def aexists(self, bucket: str, key: str) -> bool:
        return await asyncio.to_thread(self.exists, bucket, key)

    async def alist_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self.list_keys, bucket, prefix)

    async def aensure_bucket(self, bucket: str) -> None:
        await asyncio.to_thread(self.ensure_bucket, bucket)

    # -- error mapping ---------------------------------------------------------------------------

    @contextmanager
    def _errors(self, where: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except S3Error as exc:
            raise map_s3_error(exc, where) from exc
        except (ServerError, InvalidResponseError) as exc:
            raise StoreUnavailable(f"{where}: the S3 endpoint {self.endpoint} failed: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"{where}: cannot reach the S3 endpoint {self.endpoint}: {exc}") from exc


def map_s3_error(exc: S3Error, where: str) -> StorageError:
    """The typed error for an S3 error response."""
    status = exc.response.status if exc.response is not None else 0
    if exc.code in _MISSING:
        return ObjectMissing(f"{where} does not exist ({exc.code})")
    if exc.code in _FORBIDDEN:
        return ObjectForbidden(f"{where}: this service may not access it ({exc.code})")
    if exc.code in _CREDENTIALS:
        return StoreUnavailable(f"{where}: the S3 endpoint refused our credentials ({exc.code})", code="store_access")
    if status >= 500 or exc.code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
        return StoreUnavailable(f"{where}: the S3 endpoint failed ({exc.code}, HTTP {status})")
    code = "s3_" + _snake(exc.code or "error")
    return StorageError(f"{where}: {exc.code}: {exc.message}", retriable=False, code=code)


def _snake(code: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(code))
