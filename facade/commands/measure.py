"""`battery-ct measure`: a cell's can, winding and overhang measurements, one JSON line per scan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from schemas.recipes import Recipe

DESCRIPTION = """\
Measure CT scans of cylindrical cells and print one JSON line per scan on stdout: path, kind
(slice or volume), pixel_mm, measurements (by name: value, unit, confidence, or null with the
reason) and, with a recipe, conforms and the failed checks.

A PATH is an image file (PNG, TIFF, JPEG: one axial slice; a multi-page TIFF: a volume, z along
the cell axis) or a directory (each image file under it a slice; with --volume its files, in name
order, are the slices of one volume). Lengths are in mm with a pixel size (--pixel-mm, else the
recipe's pixel_mm), in pixels otherwise (and then nothing is judged against the recipe).

Examples:
  battery-ct measure --pixel-mm 0.034 cell_vol/im075.tif
  battery-ct measure --recipe 21700-nmc --volume cell_vol/
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "measure",
        help="measure the can, the winding and the anode overhang of scans: one JSON line per scan",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe",
        default=None,
        metavar="R",
        help="judge against recipe R from the registry (battery-ct recipes list); measures what it checks",
    )
    parser.add_argument(
        "--recipe-file", type=Path, default=None, metavar="FILE", help="judge against a recipe file instead"
    )
    parser.add_argument("--pixel-mm", type=float, default=None, metavar="P", help="pixel size in mm")
    parser.add_argument(
        "--slice-mm", type=float, default=None, metavar="S", help="slice spacing of volumes in mm (default: the pixel)"
    )
    parser.add_argument("--volume", action="store_true", help="a directory's image files are one volume's slices")
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files or directories")
    parser.set_defaults(handler=_run)


def _recipe(args: argparse.Namespace) -> Recipe | None:
    from model_core.recipe_book import parse_recipe

    if args.recipe_file is not None:
        return parse_recipe(args.recipe_file.read_text(encoding="utf-8"), name=str(args.recipe_file))
    if args.recipe is None:
        return None
    from facade.commands.recipes import open_recipe_book
    from schemas.settings import Settings

    return open_recipe_book(Settings()).get(args.recipe)


def _scans(args: argparse.Namespace) -> list[tuple[Path, list[Path]]]:
    """(what the line names, the files of that scan): one file, or a directory's files for --volume."""
    from facade.commands.train import image_files

    scans: list[tuple[Path, list[Path]]] = []
    for path in args.paths:
        if path.is_dir():
            files = image_files(path)
            scans.extend([(path, files)] if args.volume else [(f, [f]) for f in files])
        else:
            scans.append((path, [path]))
    return scans


def read_scan(files: list[Path], max_pixels: int) -> np.ndarray:
    """A 2-D slice, or a (z, y, x) volume from a multi-page TIFF or several slice files."""
    import numpy as np
    import tifffile

    from model_core.imaging import load_image_file

    if len(files) == 1 and files[0].suffix.lower() in (".tif", ".tiff"):
        with tifffile.TiffFile(files[0]) as tiff:
            if len(tiff.pages) > 1:
                return np.asarray(tiff.asarray(), dtype=np.float32)
    slices = [load_image_file(f, max_pixels=max_pixels) for f in files]
    if len(slices) == 1:
        return slices[0]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise ValueError(f"the slices differ in size ({', '.join(str(s) for s in sorted(shapes))})")
    return np.stack(slices)


def _run(args: argparse.Namespace) -> int:
    from model_core.errors import ModelCoreError
    from model_core.metrology.conformance import conformance
    from model_core.metrology.measure import EVERY_FAMILY, measure_slice, measure_volume
    from schemas.settings import Settings
    from storage.errors import StorageError

    try:
        recipe = _recipe(args)
    except (ModelCoreError, StorageError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pixel_mm = args.pixel_mm if args.pixel_mm is not None else (recipe.pixel_mm if recipe else None)
    families = recipe.families() if recipe is not None and recipe.tolerances else EVERY_FAMILY
    scans = _scans(args)
    if not scans:
        print("error: no image files found", file=sys.stderr)
        return 2
    failed = False
    max_pixels = Settings().max_image_pixels
    for name, files in scans:
        try:
            data = read_scan(files, max_pixels)
        except (ModelCoreError, OSError, ValueError) as exc:
            print(json.dumps({"path": str(name), "error": str(exc)}), flush=True)
            failed = True
            continue
        if data.ndim == 3:
            slice_mm = args.slice_mm if args.slice_mm is not None else pixel_mm
            measured = measure_volume(data, pixel_mm, slice_mm, families).measurements
            kind = "volume"
        else:
            measured = measure_slice(data, pixel_mm, families).measurements
            kind = "slice"
        line: dict[str, Any] = {
            "path": str(name),
            "kind": kind,
            "shape": list(data.shape),
            "pixel_mm": pixel_mm,
            "measurements": {k: m.model_dump(mode="json", exclude_none=True) for k, m in measured.items()},
        }
        if recipe is not None:
            judged = conformance(measured, recipe)
            line |= {"recipe": recipe.name, "conforms": judged.conforms, "failed": list(judged.failed)}
            if judged.reason:
                line["reason"] = judged.reason
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
