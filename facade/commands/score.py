"""`battery-ct score`: score image files with a checkpoint, one JSON line per image."""

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
        help="score slices with a checkpoint: one JSON line per image",
        description=(
            "Score image files (PNG, TIFF, JPEG; a directory is searched recursively) with the checkpoint "
            "written by `battery-ct train`. Prints one JSON line per image on stdout: path, "
            "reconstruction_error, anomaly_score, is_anomaly, threshold, model_version. An unreadable file "
            "gives a line with `error` instead, and the exit status 1."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="checkpoint directory")
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files or directories")
    parser.set_defaults(handler=_run)


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
    files = expand(args.paths)
    if not files:
        print("error: no image files found", file=sys.stderr)
        return 2
    failed = False
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
