"""A read-only Zarr v3 store over our `ObjectStore`: a `.zarr` prefix in S3 read chunk by chunk,
with the same credentials, timeouts and typed errors as every other S3 read.

zarr's own S3 stores need fsspec/s3fs or obstore and a second set of credentials; this adapter is
the handful of calls zarr makes to read (get, ranged get, exists, list).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from storage.errors import ObjectMissing

if TYPE_CHECKING:
    from storage.object_store import ObjectStore

_MAX_CHUNK_BYTES = 1 << 30  # one chunk object; a volume's own caps are checked from its metadata


class ObjectStoreZarr(Store):
    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(self, store: ObjectStore, bucket: str, prefix: str) -> None:
        super().__init__(read_only=True)
        self._store, self._bucket, self._prefix = store, bucket, prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ObjectStoreZarr)
            and (other._bucket, other._prefix) == (self._bucket, self._prefix)
            and other._store is self._store
        )

    def __hash__(self) -> int:
        return hash((self._bucket, self._prefix))

    def __str__(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}"

    def _read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        full = self._key(key)
        try:
            if byte_range is None:
                return self._store.get_bytes(self._bucket, full, max_bytes=_MAX_CHUNK_BYTES)
            if isinstance(byte_range, RangeByteRequest):
                return self._store.get_range(self._bucket, full, byte_range.start, byte_range.end - byte_range.start)
            size = self._store.size(self._bucket, full)
            if isinstance(byte_range, OffsetByteRequest):
                return self._store.get_range(self._bucket, full, byte_range.offset, size - byte_range.offset)
            if isinstance(byte_range, SuffixByteRequest):
                start = max(0, size - byte_range.suffix)
                return self._store.get_range(self._bucket, full, start, size - start)
        except ObjectMissing:
            return None
        raise TypeError(f"unexpected byte range {byte_range!r}")

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        data = await asyncio.to_thread(self._read, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._store.exists, self._bucket, self._key(key))

    async def set(self, key: str, value: Buffer) -> None:
        raise PermissionError("a scan's Zarr in object storage is read only")

    async def delete(self, key: str) -> None:
        raise PermissionError("a scan's Zarr in object storage is read only")

    async def list(self) -> AsyncIterator[str]:
        async for key in self.list_prefix(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        base = self._key("")
        for key in await asyncio.to_thread(self._store.list_keys, self._bucket, self._key(prefix)):
            yield key.removeprefix(base)

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        below = prefix.rstrip("/") + "/" if prefix else ""
        seen: set[str] = set()
        async for key in self.list_prefix(below):
            name = key.removeprefix(below).split("/", 1)[0]
            if name and name not in seen:
                seen.add(name)
                yield name
