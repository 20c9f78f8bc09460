"""Where the registry keeps its bytes: the `BlobStore` protocol, the key check every store
applies, and `LocalBlobStore` on a local directory (`storage.registry_store.S3BlobStore` is the
one on S3)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Protocol

from model_core.errors import BlobNotFound, RegistryError


class BlobStore(Protocol):
    """Bytes under string keys ("a/b/c"). `get` raises `BlobNotFound` for a missing key."""

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could leave the store's root when mapped onto a file system."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or "\\" in key or any(p in ("..", ".", "") for p in key.split("/")) or not parts:
        raise RegistryError(f"invalid registry key {key!r}")
    return key


class LocalBlobStore:
    """A `BlobStore` in a local directory. Writes are atomic (temporary file + `os.replace`)."""

    TEMP_PREFIX = ".tmp-"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no object {key!r} in {self.root}") from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith(self.TEMP_PREFIX))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
