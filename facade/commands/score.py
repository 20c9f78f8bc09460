"""`battery-ct score`: score slices and whole-cell volumes with a checkpoint, one JSON line each."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_BATCH = 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score slices and cell volumes with a checkpoint: one JSON line per slice or cell",
        description=(
            "Score image files (PNG, TIFF, JPEG; a directory is searched recursively) with the checkpoint "
            "written by `battery-ct train`. Prints one JSON line per image on stdout: path, "
            "reconstruction_error, anomaly_score, is_anomaly, threshold, model_version.\n\n"
            "A volume (a multi-page TIFF, an NRRD file, a .zarr directory, or with --volume a directory of "
            "slice images) is judged as one cell: its line has kind 'cell', slices, the per-slice score "
            "profile and findings (3-D regions: slices, centroid and bounding box in voxels and, with a voxel "
            "size, in mm). An unreadable file gives a line with `error` instead, and the exit status 1."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="checkpoint directory")
    parser.add_argument("--volume", action="store_true", help="a directory's slice images are one cell's volume")
    parser.add_argument("--pixel-mm", type=float, default=None, metavar="P", help="a volume's pixel size in mm")
    parser.add_argument("--slice-mm", type=float, default=None, metavar="S", help="a volume's slice spacing in mm")
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files, volumes or directories")
    parser.set_defaults(handler=_run)


def is_volume(path: Path, folder_is_volume: bool) -> bool:
    """Whether `path` is one cell's volume rather than slices."""
    suffix = path.suffix.lower()
    if suffix in (".nrrd", ".zarr"):
        return True
    if path.is_dir():
        return folder_is_volume
    if suffix in (".tif", ".tiff", ".btf"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tiff:
                return len(tiff.pages) > 1
        except Exception:  # not readable as TIFF: the slice path reports it
            return False
    return False


def expand(paths: list[Path]) -> list[Path]:
    """Files as given, directories replaced by the image files under them."""
    from facade.commands.train import image_files

    out: list[Path] = []
    for path in paths:
        out.extend(image_files(path) if path.is_dir() else [path])
    return out


def _run(args: argparse.Namespace) -> int:
    from facade.commands.train import load_slices
    from model_core.detector import Detector
    from model_core.errors import ModelCoreError
    from schemas.settings import Settings

    settings = Settings()
    try:
        detector = Detector.load(args.checkpoint, search=settings.detector_search)
    except ModelCoreError as exc:
        print(f"error: cannot use checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    cells = [p for p in args.paths if is_volume(p, args.volume)]
    files = expand([p for p in args.paths if p not in cells])
    if not files and not cells:
        print("error: no image files found", file=sys.stderr)
        return 2
    failed = False
    for path in cells:
        line = score_volume(path, detector, settings, args.pixel_mm, args.slice_mm)
        failed |= "error" in line
        print(json.dumps(line), flush=True)
    for start in range(0, len(files), _BATCH):
        chunk = files[start : start + _BATCH]
        loaded, problems = load_slices(chunk, detector.image_size, max_pixels=settings.max_image_pixels)
        for path, reason in problems:
            print(json.dumps({"path": str(path), "error": reason}), flush=True)
            failed = True
        if not loaded:
            continue
        import numpy as np

        results = detector.score_batch(np.stack([s.image for s in loaded]))
        for item, result in zip(loaded, results, strict=True):
            line = {
                "path": str(item.path),
                "reconstruction_error": result.reconstruction_error,
                "anomaly_score": result.anomaly_score,
                "is_anomaly": result.is_anomaly,
                "threshold": detector.threshold,
                "model_version": detector.version,
            }
            print(json.dumps(line), flush=True)
    return 1 if failed else 0


def score_volume(
    path: Path, detector: Any, settings: Any, pixel_mm: float | None, slice_mm: float | None
) -> dict[str, Any]:
    """One cell's JSON line (or a line with `error`)."""
    from model_core.cell_judgement import judge_slabs, to_findings
    from storage.volumes import VolumeError, VolumeLimits, open_path, slabs, with_voxel

    limits = VolumeLimits(settings.volume_max_slices, settings.volume_max_voxels, settings.volume_max_bytes)
    try:
        volume = open_path(path, limits, max_pixels=settings.max_image_pixels)
    except (VolumeError, OSError) as exc:
        return {"path": str(path), "error": str(exc)}
    try:
        info = with_voxel(volume.info, slice_mm, pixel_mm)

        def score(inputs: Any) -> list[tuple[float, float, Any]]:
            return [(r.anomaly_score, r.reconstruction_error, r.error_map) for r in detector.score_batch(inputs)]

        judgement = judge_slabs(slabs(volume, _BATCH), score, detector.image_size, detector.threshold)
    except (VolumeError, OSError, ValueError) as exc:
        return {"path": str(path), "error": str(exc)}
    finally:
        volume.close()
    return {
        "path": str(path),
        "kind": "cell",
        "reconstruction_error": judgement.reconstruction_error,
        "anomaly_score": judgement.anomaly_score,
        "is_anomaly": judgement.is_anomaly,
        "threshold": detector.threshold,
        "model_version": detector.version,
        "slices": len(judgement.scores),
        "slice_mm": info.slice_mm,
        "pixel_mm": info.pixel_mm,
        "profile": [round(v, 5) for v in judgement.confirmed],
        "findings": [f.model_dump(mode="json") for f in to_findings(judgement, info.slice_mm, info.pixel_mm)],
    }
