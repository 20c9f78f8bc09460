"""The checkpoint registry's `BlobStore` on an S3 bucket, through `ObjectStore`.

Keys are used as object names unchanged, so the bucket shows the registry's layout as is
(`versions/<version>/...`, `status/...`, `current.json`). Storage errors pass through with their
`retriable` flag: an unreachable endpoint is worth retrying, the registry's own refusals are not.
"""

from __future__ import annotations

from model_core.blob_store import check_key
from model_core.errors import BlobNotFound
from storage.errors import ObjectMissing
from storage.object_store import ObjectStore

# A checkpoint file is a few megabytes; the cap only stops a runaway object from filling memory.
MAX_BLOB_BYTES = 1024 * 1024 * 1024


class S3BlobStore:
    """`model_core.registry.BlobStore` on one bucket of an `ObjectStore`. S3 PUTs are atomic: a
    reader sees the old object or the new one, never half of one."""

    def __init__(self, store: ObjectStore, bucket: str, *, max_bytes: int = MAX_BLOB_BYTES) -> None:
        self.store = store
        self.bucket = bucket
        self.max_bytes = max_bytes

    def get(self, key: str) -> bytes:
        try:
            return self.store.get_bytes(self.bucket, check_key(key), max_bytes=self.max_bytes)
        except ObjectMissing as exc:
            raise BlobNotFound(f"no object {key!r} in bucket {self.bucket}") from exc

    def put(self, key: str, data: bytes) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        self.store.put_bytes(self.bucket, check_key(key), data, content_type=content_type)

    def exists(self, key: str) -> bool:
        return self.store.exists(self.bucket, check_key(key))

    def list(self, prefix: str) -> list[str]:
        try:
            return self.store.list_keys(self.bucket, prefix)
        except ObjectMissing:  # no bucket yet: an empty registry
            return []

    def delete(self, key: str) -> None:
        self.store.delete(self.bucket, check_key(key))
