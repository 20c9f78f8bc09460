"""The dataset writer: a folder of 16-bit PNG slices, their defect masks and `labels.csv`.

Layout (DESIGN's contract for `battery-ct synth`):
    DIR/normal/normal_000000.png
    DIR/defect/<type>/<type>_000000.png      (16-bit grayscale)
    DIR/masks/<type>/<type>_000000.png       (8-bit 0/255, same stem as its slice)
    DIR/labels.csv                           (one row per slice, paths relative to DIR)
Defect slices cycle through the types and, per type, through low / medium / high severity.
"""

from __future__ import annotations

import csv
import multiprocessing
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from tqdm import tqdm

from producers.simulator.render import render_slice
from producers.simulator.sampling import random_spec, slice_rng
from producers.simulator.spec import DEFECT_TYPES, SEVERITIES, DefectType, SliceSpec

LABEL_COLUMNS = ("path", "label", "defect_type", "severity", "mask_path", "mask_pixels", "seed", "index", "size")
NORMAL_STREAM, DEFECT_STREAM = 0, 1


class DatasetError(ValueError):
    """The dataset cannot be written as asked (bad counts, an existing dataset in the way)."""


@dataclass(frozen=True)
class PlannedSlice:
    """One slice of a dataset: its description and where it goes (paths relative to the dataset)."""

    index: int
    spec: SliceSpec
    path: str
    mask_path: str | None


def planned_slice(
    seed: int, index: int, *, size: int = 256, defect: bool = False, defect_types: Sequence[DefectType] = DEFECT_TYPES
) -> PlannedSlice:
    """Slice `index` of the normal (or defect) part of the dataset with master seed `seed`, alone."""
    if not defect:
        spec = random_spec(slice_rng(seed, NORMAL_STREAM, index), size)
        return PlannedSlice(index, spec, f"normal/normal_{index:06d}.png", None)
    defect_type = defect_types[index % len(defect_types)]
    severity = SEVERITIES[(index // len(defect_types)) % len(SEVERITIES)]
    spec = random_spec(slice_rng(seed, DEFECT_STREAM, index), size, defect_type, severity)
    stem = f"{defect_type}/{defect_type}_{index:06d}.png"
    return PlannedSlice(index, spec, f"defect/{stem}", f"masks/{stem}")


def plan_dataset(
    normal: int, defect: int, seed: int, *, size: int = 256, defect_types: Sequence[DefectType] = DEFECT_TYPES
) -> list[PlannedSlice]:
    if normal < 0 or defect < 0:
        raise DatasetError("slice counts must not be negative")
    if not defect_types:
        raise DatasetError("at least one defect type is needed")
    return [planned_slice(seed, i, size=size) for i in range(normal)] + [
        planned_slice(seed, i, size=size, defect=True, defect_types=defect_types) for i in range(defect)
    ]


def write_png(path: Path, array: npt.NDArray[np.uint16] | npt.NDArray[np.uint8]) -> None:
    """A grayscale PNG of the array's own bit depth (no metadata, so equal arrays give equal bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _clear(out: Path, overwrite: bool) -> None:
    ours = [out / "normal", out / "defect", out / "masks", out / "labels.csv"]
    if not overwrite and any(p.exists() for p in ours):
        raise DatasetError(
            f"{out} already holds a dataset (normal/, defect/, masks/ or labels.csv); "
            "choose another folder or overwrite it"
        )
    for path in ours:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _write(out: Path, item: PlannedSlice) -> int:
    """Render one planned slice into `out`; returns its mask's pixel count (runs in worker processes too)."""
    image, mask = render_slice(item.spec)
    write_png(out / item.path, image)
    if item.mask_path is not None:
        write_png(out / item.mask_path, mask)
    return int(np.count_nonzero(mask))


def generate_dataset(
    out: Path,
    normal: int,
    defect: int,
    seed: int,
    *,
    size: int = 256,
    defect_types: Sequence[DefectType] = DEFECT_TYPES,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> list[dict[str, str]]:
    """Write the dataset under `out` and return the rows of its `labels.csv`. `workers` > 1 renders
    in that many processes; every slice depends only on its own seed, so the bytes are the same."""
    if workers < 1:
        raise DatasetError(f"workers must be 1 or more, not {workers}")
    plan = plan_dataset(normal, defect, seed, size=size, defect_types=defect_types)
    _clear(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(plan), desc="slices", unit="slice", disable=not progress, leave=False)
    # spawned, not forked: the caller may hold threads (TensorFlow, an event loop) that a fork would copy mid-lock
    spawn = multiprocessing.get_context("spawn")
    with bar, ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 else nullcontext() as pool:
        if pool is None:
            counts: Iterable[int] = (_write(out, item) for item in plan)
        else:
            counts = pool.map(partial(_write, out), plan, chunksize=max(1, len(plan) // (8 * workers)))
        rows = []
        for item, mask_pixels in zip(plan, counts, strict=True):
            rows.append(_row(item, mask_pixels))
            bar.update()
    with (out / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _row(item: PlannedSlice, mask_pixels: int) -> dict[str, str]:
    defect = item.spec.defect
    return {
        "path": item.path,
        "label": "normal" if defect is None else "defect",
        "defect_type": "" if defect is None else defect.type,
        "severity": "" if defect is None else defect.severity,
        "mask_path": item.mask_path or "",
        "mask_pixels": str(mask_pixels),
        "seed": str(item.spec.seed),
        "index": str(item.index),
        "size": str(item.spec.size),
    }
