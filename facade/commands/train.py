"""`battery-ct train`: train a detector on a directory of slices and write a checkpoint directory."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from model_core.training import EpochProgress

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a detector on DIR/normal (and calibrate with DIR/defect), write a checkpoint",
        description=(
            "Train the anomaly detector on the normal slices under DIR/normal/ (any depth; PNG, TIFF or "
            "JPEG, 8- or 16-bit). Slices under DIR/defect/ (optional) only calibrate the threshold. "
            "Prints progress per epoch and the checkpoint's draft name on stderr, its location on stdout; "
            "`battery-ct checkpoints import` publishes it under its registry version."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="directory with normal/ [defect/]")
    parser.add_argument("--out", type=Path, required=True, metavar="CKPT", help="checkpoint directory to write")
    parser.add_argument("--epochs", type=int, default=None, help="most autoencoder epochs (default: settings, 40)")
    parser.add_argument("--image-size", type=int, default=None, metavar="PX", help="model resolution (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(handler=_run)


@dataclass(frozen=True)
class LoadedSlice:
    path: Path
    image: np.ndarray


def load_slices(
    paths: Iterable[Path], size: int, *, max_pixels: int
) -> tuple[list[LoadedSlice], list[tuple[Path, str]]]:
    """Decode and preprocess image files; unreadable ones are reported, not fatal."""
    from model_core.errors import ImageDecodeError
    from model_core.imaging import load_image_file, preprocess

    loaded, problems = [], []
    for path in paths:
        try:
            raw = load_image_file(path, max_pixels=max_pixels)
            loaded.append(LoadedSlice(path, preprocess(raw, size)))
        except (ImageDecodeError, OSError) as exc:
            problems.append((path, str(exc)))
    return loaded, problems


def image_files(directory: Path) -> list[Path]:
    """Image files under `directory` (recursive, sorted); none when it does not exist."""
    from model_core.imaging import iter_image_files

    return sorted(iter_image_files(directory)) if directory.is_dir() else []


def _print_progress(step: EpochProgress) -> None:
    minutes, seconds = divmod(round(step.seconds_left), 60)
    print(
        f"epoch {step.epoch}/{step.epochs}  loss {step.loss:.6f}  val loss {step.val_loss:.6f}  "
        f"time left ~{minutes}m{seconds:02d}s",
        file=sys.stderr,
        flush=True,
    )


def _run(args: argparse.Namespace) -> int:
    from model_core.checkpoint import read_metadata
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.thresholds import ThresholdRule
    from model_core.training import TrainingConfig, train_detector
    from schemas.settings import Settings

    settings = Settings()
    size = args.image_size or settings.image_size
    normal_dir, defect_dir = args.data / "normal", args.data / "defect"
    normal_paths = image_files(normal_dir)
    if not normal_paths:
        print(f"error: no image files under {normal_dir}", file=sys.stderr)
        return 2
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: {args.out} exists and is not empty; checkpoints are never overwritten", file=sys.stderr)
        return 2
    print(f"loading {len(normal_paths)} normal slices from {normal_dir} ...", file=sys.stderr, flush=True)
    normal, problems = load_slices(normal_paths, size, max_pixels=settings.max_image_pixels)
    defects, defect_problems = load_slices(image_files(defect_dir), size, max_pixels=settings.max_image_pixels)
    for path, reason in problems + defect_problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not normal:
        print("error: none of the normal slices could be read", file=sys.stderr)
        return 2
    print(f"training on {len(normal)} normal slices, {len(defects)} known defects, {size} px", file=sys.stderr)
    config = TrainingConfig(
        network=NetworkConfig(image_size=size),
        memory=PatchMemoryConfig.for_image_size(size),
        threshold=ThresholdRule(
            mode=settings.threshold_mode, quantile=settings.threshold_quantile, max_fpr=settings.threshold_max_fpr
        ),
        epochs=args.epochs or settings.epochs,
        batch_size=settings.batch_size,
        seed=args.seed,
    )
    trained = train_detector(
        [s.image for s in normal], [s.image for s in defects] or None, config, progress=_print_progress
    )
    sample_ids = [str(s.path.relative_to(args.data)) for s in normal]
    trained.save(args.out, sample_ids=sample_ids)
    print(
        f"threshold {trained.threshold.threshold:.4f} ({trained.threshold.rule}); "
        f"validation error {trained.validation_error:.6f}; trained in {trained.training_seconds:.0f} s",
        file=sys.stderr,
    )
    print(
        f"draft {read_metadata(args.out).version}: `battery-ct checkpoints import {args.out}` gives it its version",
        file=sys.stderr,
    )
    print(f"checkpoint written to {args.out}")
    return 0
