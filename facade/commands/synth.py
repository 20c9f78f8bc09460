"""`battery-ct synth`: write a folder of simulated CT slices with defect masks and labels.csv."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SIZE = 256


def register(subparsers: Any) -> None:
    from producers.simulator.spec import DEFECT_TYPES, SEVERITIES

    parser = subparsers.add_parser(
        "synth",
        help="write simulated CT slices of battery cells (normal and defective) with masks and labels.csv",
        description=(
            "Simulate axial CT slices of cylindrical Li-ion cells (steel can, jelly-roll spiral, core, tabs, "
            "CT noise and artefacts) and write them as 16-bit grayscale PNGs: DIR/normal/*.png, "
            "DIR/defect/<type>/*.png, a 0/255 mask per defect slice in DIR/masks/<type>/ (same file name) and "
            "DIR/labels.csv (path, label, defect_type, severity, mask_path, mask_pixels, seed, index, size). "
            f"Defect slices cycle through the types ({', '.join(DEFECT_TYPES)}) and, per type, through the "
            f"severities ({', '.join(SEVERITIES)}). The same seed gives the same bytes."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write (created if missing)")
    parser.add_argument("--normal", type=_count, default=0, metavar="N", help="number of normal slices (default 0)")
    parser.add_argument("--defect", type=_count, default=0, metavar="M", help="number of defect slices (default 0)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="master seed (default 0)")
    parser.add_argument(
        "--size",
        type=_size,
        default=DEFAULT_SIZE,
        metavar="PX",
        help=f"slice width and height (default {DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--types",
        type=_types,
        default=DEFECT_TYPES,
        metavar="T1,T2",
        help="comma-separated defect types to use (default: all)",
    )
    parser.add_argument(
        "--workers", type=_workers, default=1, metavar="W", help="render in W processes (default 1; same bytes)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run, synth_parser=parser)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _size(text: str) -> int:
    value = _count(text)
    if not 32 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"must be between 32 and 4096 pixels, not {value}")
    return value


def _workers(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _types(text: str) -> tuple[str, ...]:
    from producers.simulator.spec import DEFECT_TYPES

    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in chosen if t not in DEFECT_TYPES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown defect type(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(DEFECT_TYPES)}"
        )
    return chosen


def _run(args: argparse.Namespace) -> int:
    from producers.simulator.dataset import DatasetError, generate_dataset

    if args.normal == 0 and args.defect == 0:
        args.synth_parser.error("nothing to write: give --normal N and/or --defect M (at least one above 0)")
    started = time.monotonic()
    try:
        rows = generate_dataset(
            args.out,
            args.normal,
            args.defect,
            args.seed,
            size=args.size,
            defect_types=args.types,
            overwrite=args.overwrite,
            workers=args.workers,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except DatasetError as exc:
        args.synth_parser.error(f"{exc} (--overwrite replaces it)" if "already holds" in str(exc) else str(exc))
    elapsed = time.monotonic() - started
    summary = {
        "out": str(args.out),
        "normal": sum(row["label"] == "normal" for row in rows),
        "defect": sum(row["label"] == "defect" for row in rows),
        "labels": str(args.out / "labels.csv"),
        "seconds": round(elapsed, 2),
        "slices_per_second": round(len(rows) / elapsed, 1) if elapsed > 0 else None,
    }
    print(json.dumps(summary))
    return 0
