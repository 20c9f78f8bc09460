"""`battery-ct upload`: put scan files in the scans bucket and announce each with a ScanEvent."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.uploader import Uploader
    from schemas.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "upload",
        help="upload CT slices to the scans bucket and publish a ScanEvent for each",
        description=(
            "Upload image files (PNG, TIFF, JPEG; a directory is searched recursively) to the scans bucket "
            "(BATTERY_CT_BUCKET_SCANS) as <scan_id><ext>, then publish a ScanEvent keyed by the scan id to the "
            "scans topic, which the inference consumer answers with a verdict. Every file is decoded first: a "
            "file that is not a usable image is refused with the reason and the others are still uploaded. "
            "Prints one JSON line per uploaded file on stdout (path, scan_id, image_url); problems go to "
            "stderr. Exit status: 0 all uploaded, 1 some refused or failed, 2 nothing could be done."
        ),
    )
    parser.add_argument("paths", type=Path, nargs="+", metavar="FILE", help="image files or directories")
    parser.add_argument(
        "--scan-id-prefix",
        default="",
        metavar="PREFIX",
        help="prepended to every scan id, e.g. 'line1/' (scan id: <prefix><file stem>-<8 hex of its SHA-256>)",
    )
    parser.add_argument(
        "--no-event",
        action="store_true",
        help="only upload; a MinIO bucket notification on the scans bucket already announces new objects",
    )
    parser.add_argument("--jobs", type=int, default=4, metavar="N", help="files uploaded at the same time (default 4)")
    parser.add_argument(
        "--recipe", default=None, metavar="R", help="the cells' recipe, named in each event (see battery-ct recipes)"
    )
    parser.add_argument(
        "--pixel-mm", type=float, default=None, metavar="P", help="the scans' pixel size in mm, named in each event"
    )
    parser.set_defaults(handler=_run)


def expand(paths: list[Path]) -> list[Path]:
    from model_core.imaging import iter_image_files

    files: list[Path] = []
    for path in paths:
        files.extend(iter_image_files(path) if path.is_dir() else [path])
    return files


def _run(args: argparse.Namespace) -> int:
    from schemas.settings import Settings

    files = expand(args.paths)
    if not files:
        print("error: no image files found", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    return asyncio.run(
        upload_files(
            Settings(),
            files,
            prefix=args.scan_id_prefix,
            events=not args.no_event,
            jobs=args.jobs,
            recipe=args.recipe,
            pixel_mm=args.pixel_mm,
        )
    )


async def upload_files(
    settings: Settings,
    files: list[Path],
    *,
    prefix: str = "",
    events: bool = True,
    jobs: int = 4,
    recipe: str | None = None,
    pixel_mm: float | None = None,
) -> int:
    """Upload `files` with at most `jobs` in flight; a JSON line per upload as it completes."""
    from producers.uploader import Uploader

    uploader = Uploader(settings, publish_events=events)
    try:
        await uploader.start()
    except Exception as exc:  # the endpoint or broker is down: nothing can be uploaded
        await uploader.stop()
        print(f"error: cannot reach the S3 endpoint or Kafka broker: {exc}", file=sys.stderr)
        return 2
    slots = asyncio.Semaphore(jobs)
    done = 0

    async def one(path: Path) -> bool:
        nonlocal done
        async with slots:
            ok = await _upload_one(uploader, settings, path, prefix, recipe, pixel_mm)
        done += 1
        if len(files) > 1:
            print(f"[{done}/{len(files)}] {path.name}", file=sys.stderr)
        return ok

    try:
        results = await asyncio.gather(*(one(path) for path in files))
    finally:
        await uploader.stop()
    failed = results.count(False)
    if failed:
        print(f"{len(files) - failed} of {len(files)} files uploaded, {failed} refused or failed", file=sys.stderr)
    return 1 if failed else 0


async def _upload_one(
    uploader: Uploader, settings: Settings, path: Path, prefix: str, recipe: str | None, pixel_mm: float | None
) -> bool:
    from producers.uploader import UploadRefused, scan_id_for

    try:
        data = await asyncio.to_thread(_read, path, settings.max_object_bytes)
        scan_id = scan_id_for(path.name, data, prefix=prefix)
        event = await uploader.upload(data, scan_id, path.suffix, recipe=recipe, pixel_mm=pixel_mm)
    except (UploadRefused, OSError) as exc:
        print(f"refused {path}: {exc}", file=sys.stderr)
        return False
    except Exception as exc:  # S3 or Kafka failed for this file: report it, go on with the rest
        print(f"failed {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    print(json.dumps({"path": str(path), "scan_id": event.scan_id, "image_url": event.image_url}), flush=True)
    return True


def _read(path: Path, max_bytes: int) -> bytes:
    from producers.uploader import UploadRefused

    size = path.stat().st_size
    if size > max_bytes:  # checked before reading: a huge file never fills memory
        raise UploadRefused(f"{size} bytes is more than the {max_bytes} a scan may have", code="too_large")
    return path.read_bytes()
