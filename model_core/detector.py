"""A loaded checkpoint behind one object: `Detector.load(dir)` and `score_batch(images)`.

A checkpoint directory holds the autoencoder (`autoencoder.keras`), the normal-patch memory
(`memory.npz`), how both were configured and which cell view unrolls the slices
(`detector.json`) and `metadata.json` (threshold, version, hashes of every file). Serving never
imports the training code.

Two scoring paths: `search="exact"`, the reference (scipy's interpolation, every memory patch
compared in full), and `search="fast"` (`model_core.fast_path`, `model_core.fast_search`: OpenCV
remaps, the batch's search per patch row through a projection and a cluster-pruned index stored
in `memory.npz`). A spec names its path; checkpoints from before it (no `search`) are exact and
score exactly as they did. `Detector.load(dir, search=...)` overrides the spec's choice.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from threadpoolctl import ThreadpoolController

from model_core import fast_path
from model_core.cell_view import DEFAULT_CELL_VIEW, cell_view
from model_core.fast_search import FastSearchConfig
from model_core.network import NetworkConfig
from model_core.patch_memory import PatchMemory
from model_core.scoring import PatchMemoryConfig, image_anomaly_map, layer_grid, slice_score

if TYPE_CHECKING:
    from model_core.checkpoint import CheckpointMetadata

MODEL_FILE = "autoencoder.keras"
MEMORY_FILE = "memory.npz"
SPEC_FILE = "detector.json"

Search = Literal["exact", "fast"]


class DetectorSpec(BaseModel):
    """How the detector's parts were built; stored with the checkpoint. A spec written before
    cell views (no `cell_view`) is cylindrical, the only geometry there was."""

    model_config = ConfigDict(frozen=True)

    network: NetworkConfig = Field(default_factory=NetworkConfig)
    memory: PatchMemoryConfig = Field(default_factory=PatchMemoryConfig)
    cell_view: str = Field(DEFAULT_CELL_VIEW, description="The cell view that unrolls slices to the layer grid")
    search: Search = Field(
        "exact",
        description="Scoring path: the exact reference, or the fast one (needs the memory's fast index)",
    )
    fast: FastSearchConfig = Field(default_factory=FastSearchConfig, description="How the fast index is built")

    @field_validator("cell_view")
    @classmethod
    def _known_view(cls, name: str) -> str:
        cell_view(name)  # refuses a name no view has
        return name


@dataclass(frozen=True)
class ScanScore:
    """What the detector says about one slice."""

    reconstruction_error: float  # mean squared autoencoder error (the original spec's evidence)
    anomaly_score: float  # the decision score: the patch memory's peak
    is_anomaly: bool  # anomaly_score > threshold
    error_map: np.ndarray  # (S, S) float32 anomaly map on the slice, what the heat map shows


class DetectorCore:
    """The trained parts and the scoring of a batch, without checkpoint bookkeeping."""

    def __init__(
        self,
        spec: DetectorSpec,
        autoencoder: Any,
        memory: PatchMemory,
        *,
        search: Search | None = None,
        threads: int | None = None,
    ) -> None:
        import tensorflow as tf

        self.spec = spec
        self.view = cell_view(spec.cell_view)
        if memory.wrap != self.view.wraps:
            raise ValueError(f"a {spec.cell_view} detector needs a memory with wrap={self.view.wraps}")
        self.search: Search = search or spec.search
        if self.search == "fast" and not memory.has_fast_index:
            # an older checkpoint asked to run fast: the index is fitted here, the same on every load
            memory = memory.with_fast_index(spec.fast, np.random.default_rng(0))
        self.autoencoder = autoencoder
        self.memory = memory
        self._reconstruct: Callable[[Any], Any] = tf.function(
            lambda batch: autoencoder(batch, training=False), reduce_retracing=True
        )
        # Keras models and the memory's scratch arrays are not meant for concurrent callers: one
        # lock each, so that the fast path runs the autoencoder beside the memory's search.
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.threads = threads or _usable_cores()
        self._blas = ThreadpoolController()

    @property
    def image_size(self) -> int:
        return self.spec.network.image_size

    def reconstruction_errors(self, images: np.ndarray) -> np.ndarray:
        """Mean squared reconstruction error per image, (N,)."""
        with self._model_lock:
            recon = np.asarray(self._reconstruct(images[..., None].astype(np.float32)))[..., 0]
        return np.asarray(np.mean(np.square(images - recon), axis=(1, 2)), dtype=np.float64)

    def anomaly(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """The anomaly score and map of one slice."""
        grid, location = layer_grid(image, self.spec.memory, self.view)
        with self._lock:
            patch_map = self.memory.patch_map(grid)
        score = slice_score(patch_map, self.spec.memory)
        return score, image_anomaly_map(patch_map, location, self.spec.memory, image.shape, self.view)

    def anomalies_fast(self, images: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """The anomaly score and map of every slice of a batch by the fast path: the per-slice
        steps and the patch rows' searches spread over `threads` threads, BLAS single-threaded
        meanwhile (its own threads only contend with them on matrices this small)."""
        config = self.spec.memory
        shape = (images.shape[1], images.shape[2])

        def draw(item: tuple[np.ndarray, Any]) -> tuple[float, np.ndarray]:
            patch_map, location = item
            return slice_score(patch_map, config), fast_path.anomaly_map(patch_map, location, config, shape, self.view)

        with (
            ThreadPoolExecutor(self.threads, thread_name_prefix="detector") as pool,
            self._blas.limit(limits=1, user_api="blas"),
        ):
            grids, locations = fast_path.layer_grids(images, config, self.view, pool.map)
            with self._lock:
                maps = self.memory.fast_patch_maps(grids, pool.map)
            return list(pool.map(draw, zip(maps, locations, strict=True)))

    def scores(self, images: np.ndarray, threshold: float) -> list[ScanScore]:
        images = _check_batch(images, self.image_size)
        if images.shape[0] == 0:
            return []
        if self.search == "fast":
            # the autoencoder (TensorFlow's own threads) beside the memory's work: each leaves the
            # cores idle part of the time, together they fill them
            with ThreadPoolExecutor(1, thread_name_prefix="autoencoder") as side:
                pending = side.submit(self.reconstruction_errors, images)
                anomalies = self.anomalies_fast(images)
                errors = pending.result()
        else:
            errors = self.reconstruction_errors(images)
            anomalies = [self.anomaly(image) for image in images]
        return [
            ScanScore(float(error), score, score > threshold, amap)
            for (score, amap), error in zip(anomalies, errors, strict=True)
        ]

    def save_parts(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.autoencoder.save(directory / MODEL_FILE)
        arrays: dict[str, Any] = self.memory.to_arrays()
        np.savez_compressed(directory / MEMORY_FILE, **arrays)
        (directory / SPEC_FILE).write_text(self.spec.model_dump_json(indent=2) + "\n")

    @classmethod
    def load_parts(cls, directory: Path, *, search: Search | None = None) -> DetectorCore:
        import keras

        spec = DetectorSpec.model_validate(json.loads((directory / SPEC_FILE).read_text()))
        autoencoder = keras.models.load_model(directory / MODEL_FILE, compile=False)
        with np.load(directory / MEMORY_FILE) as arrays:
            memory = PatchMemory.from_arrays(
                spec.memory, dict(arrays), wrap=cell_view(spec.cell_view).wraps, fast=spec.fast
            )
        return cls(spec, autoencoder, memory, search=search)


def _usable_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _check_batch(images: np.ndarray, size: int) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise ValueError(f"expected images of shape (N, {size}, {size}), got {images.shape}")
    return images


class Detector:
    """A verified checkpoint, ready to score. Safe to call from one worker thread at a time
    while other threads (an event loop) run; concurrent callers are serialised."""

    def __init__(self, core: DetectorCore, metadata: CheckpointMetadata) -> None:
        self.core = core
        self.metadata = metadata

    @classmethod
    def load(cls, checkpoint_dir: Path, *, search: Search | None = None) -> Detector:
        """Verify the checkpoint's hashes, then load it. Raises `CheckpointIntegrityError` on a
        tampered or incomplete checkpoint and `CheckpointError` when it cannot be loaded.
        `search` picks the scoring path ("exact" | "fast"); None keeps the checkpoint's own."""
        from model_core.checkpoint import verify_checkpoint
        from model_core.errors import CheckpointError

        checkpoint_dir = Path(checkpoint_dir)
        metadata = verify_checkpoint(checkpoint_dir)
        try:
            core = DetectorCore.load_parts(checkpoint_dir, search=search)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot load checkpoint {checkpoint_dir}: {exc}") from exc
        return cls(core, metadata)

    @property
    def version(self) -> str:
        return str(self.metadata.version)

    @property
    def threshold(self) -> float:
        return float(self.metadata.threshold)

    @property
    def image_size(self) -> int:
        return self.core.image_size

    @property
    def search(self) -> Search:
        """The scoring path this detector runs: "exact" (the reference) or "fast"."""
        return self.core.search

    @property
    def cell_view(self) -> str:
        """The name of the cell view its slices are unrolled with (`model_core.cell_view`)."""
        return self.core.spec.cell_view

    def score_batch(self, images: np.ndarray) -> list[ScanScore]:
        """Score preprocessed slices, (N, S, S) float32 in [0, 1]."""
        return self.core.scores(images, self.threshold)
