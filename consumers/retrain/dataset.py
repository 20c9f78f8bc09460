"""The dataset's images: fetched from the datasets bucket, decoded once (with the decoder every reader of
scans uses, `storage.scans.scan_decoder`), kept in memory.

Blocking (object store and decoding): call it from a worker thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from consumers.retrain.manifest import ManifestEntry
from storage.scans import DecodeFn

if TYPE_CHECKING:
    from storage.object_store import ObjectStore


class DatasetImages:
    """Preprocessed images by (content hash, size). Raw decoded images are not kept: CT slices are big."""

    def __init__(
        self,
        store: ObjectStore | None,
        bucket: str,
        *,
        decode: DecodeFn,
        size: int,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._bucket = bucket
        self._decode = decode
        self.size = size
        self._max_bytes = max_bytes
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def add(self, sha256: str, data: bytes) -> np.ndarray:
        """Decode and keep a scan at the current size; raises the decoder's error on a bad image."""
        image = np.asarray(self._decode(data, self.size), dtype=np.float32)
        with self._lock:
            self._cache[(sha256, self.size)] = image
        return image

    def load(self, entries: list[ManifestEntry], size: int) -> np.ndarray:
        """(N, size, size) float32 of `entries`, fetching what is not cached from the datasets bucket."""
        if size != self.size:
            with self._lock:  # the model's size changed (a checkpoint import): old entries are useless
                self._cache.clear()
            self.size = size
        out = []
        for entry in entries:
            with self._lock:
                image = self._cache.get((entry.sha256, size))
            if image is None:
                if self._store is None:
                    raise LookupError(f"scan {entry.sha256} is not cached and there is no object store")
                data = self._store.get_bytes(self._bucket, entry.object_key, max_bytes=self._max_bytes)
                image = self.add(entry.sha256, data)
            out.append(image)
        if not out:
            return np.empty((0, size, size), np.float32)
        return np.stack(out).astype(np.float32, copy=False)
