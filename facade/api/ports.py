"""What the facade needs from the outside world, as Protocols: the real clients (storage, the
registry, Kafka) satisfy them in `wiring`, and unit tests pass small fakes at this boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from schemas.api import CheckpointInfo
from schemas.model_updates import ModelUpdate


class ObjectRefLike(Protocol):
    @property
    def bucket(self) -> str: ...

    @property
    def key(self) -> str: ...


# image_url -> (bucket, key); raises storage.errors.UrlNotAllowed (the one policy lives in storage.urls)
UrlPolicy = Callable[[str], ObjectRefLike]
# (object bytes, model input size) -> (S, S) float32, raises ImageDecodeError
Decoder = Callable[[bytes, int], np.ndarray]


class Store(Protocol):
    async def aget_bytes(self, bucket: str, key: str, *, max_bytes: int) -> bytes: ...

    async def aput_bytes(self, bucket: str, key: str, data: bytes, *, content_type: str = ...) -> object: ...

    def exists(self, bucket: str, key: str) -> bool: ...


class Catalog(Protocol):
    """The model registry as the facade sees it (blocking calls: run them in a worker thread)."""

    def current_version(self) -> str | None: ...

    def fetch(self, version: str, dest: Path) -> Path: ...

    def checkpoints(self) -> list[CheckpointInfo]: ...

    def rollback(self, version: str) -> ModelUpdate:
        """Serve `version` again; returns the rolled_back update to broadcast."""
        ...


class Publisher(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class UpdateFeed(Protocol):
    """Model updates broadcast from the moment `open` returns (earlier ones are not replayed)."""

    async def open(self) -> None: ...

    def updates(self) -> AsyncIterator[ModelUpdate]: ...

    async def close(self) -> None: ...
