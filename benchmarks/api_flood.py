"""A flood of tiny PNGs that decode to just under the pixel cap, against `/predict`, while valid
`/predict` calls run: the facade's resident memory and the valid calls' latency.

Needs a running broker and S3 endpoint (`eval "$(battery-ct infra up --env)"`), then:

    python -m benchmarks.api_flood --seconds 30 --flooders 24

1. a quick detector (64 px) is published and promoted in a fresh registry bucket; one valid scan
   and one "bomb" (a PNG of a few KB whose header says just under `max_image_pixels`) are uploaded;
2. `battery-ct serve api` runs as its own process (so its memory is its own), with the defaults
   of the pixel cap and the decoding budget;
3. its resident memory is sampled from /proc every 50 ms: idle, then for `--seconds` while
   `--flooders` clients post the bomb back to back and one client posts the valid scan.

Prints one JSON object: rss_idle_mb, rss_peak_mb, the documented bound (idle + both decoding
lanes' budgets at 6 bytes per pixel: a decoded slice as float32 plus the PIL image and one
resampled copy), valid calls answered and their p50/p99, and the flood's answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from schemas.settings import Settings

BYTES_PER_PIXEL = 6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the flood lasts (default 30)")
    parser.add_argument("--flooders", type=int, default=24, help="clients posting the bomb at once (default 24)")
    parser.add_argument("--size", type=int, default=64, help="model size of the quick detector (default 64)")
    return parser.parse_args(argv)


def bomb_png(max_pixels: int) -> bytes:
    """A black 8-bit PNG of side floor(sqrt(cap)) - 1: a few KB, just under the cap once decoded."""
    side = int(max_pixels**0.5) - 1
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def flood(
    url: str, settings: Settings, keys: tuple[str, str], args: argparse.Namespace, pid: int
) -> dict[str, object]:
    valid_key, bomb_key = keys
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    valid_s: list[float] = []
    valid_status: Counter[int] = Counter()
    deadline = time.monotonic() + args.seconds

    async def sample() -> None:
        while time.monotonic() < deadline:
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.05)

    async def flooder(client: httpx.AsyncClient) -> None:
        body = {"image_url": f"s3://{settings.bucket_scans}/{bomb_key}"}
        while time.monotonic() < deadline:
            statuses[(await client.post("/predict", json=body)).status_code] += 1

    async def valid(client: httpx.AsyncClient) -> None:
        body = {"image_url": f"s3://{settings.bucket_scans}/{valid_key}"}
        while time.monotonic() < deadline:
            started = time.perf_counter()
            answer = await client.post("/predict", json=body)
            valid_s.append(time.perf_counter() - started)
            valid_status[answer.status_code] += 1

    limits = httpx.Limits(max_connections=args.flooders + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(sample(), valid(client), *(flooder(client) for _ in range(args.flooders)))
    ms = np.asarray(valid_s) * 1000
    return {
        "rss_peak_mb": round(max(samples), 1),
        "valid_answered": int(sum(valid_status.values())),
        "valid_status": dict(valid_status),
        "valid_p50_ms": round(float(np.percentile(ms, 50)), 1),
        "valid_p99_ms": round(float(np.percentile(ms, 99)), 1),
        "flood_status": dict(statuses),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from benchmarks.throughput import quick_checkpoint, simulated_pngs
    from local_stack.free_ports import free_port
    from model_core.registry import Registry
    from storage.object_store import ObjectStore
    from storage.registry_store import S3BlobStore

    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="api-flood-") as tmp:
        work = Path(tmp)
        settings = Settings(
            bucket_scans=f"flood-scans-{run_id}",
            bucket_models=f"flood-models-{run_id}",
            topic_model_updates=f"flood.model-updates.{run_id}",
            topic_accepted=f"flood.accepted.{run_id}",
            checkpoint_dir=work / "serving",
            image_size=args.size,
        )
        store = ObjectStore.from_settings(settings)
        for bucket in (settings.bucket_scans, settings.bucket_models):
            store.ensure_bucket(bucket)
        print("a quick detector, one valid scan, one bomb ...", file=sys.stderr)
        registry = Registry(S3BlobStore(store, settings.bucket_models))
        registry.promote(registry.publish(quick_checkpoint(args.size, work, 7)))
        bomb = bomb_png(settings.max_image_pixels)
        store.put_bytes(settings.bucket_scans, "valid.png", simulated_pngs(1, 256, 7)[0], content_type="image/png")
        store.put_bytes(settings.bucket_scans, "bomb.png", bomb, content_type="image/png")

        port = free_port()
        env = {
            **os.environ,
            "BATTERY_CT_BUCKET_SCANS": settings.bucket_scans,
            "BATTERY_CT_BUCKET_MODELS": settings.bucket_models,
            "BATTERY_CT_TOPIC_MODEL_UPDATES": settings.topic_model_updates,
            "BATTERY_CT_TOPIC_ACCEPTED": settings.topic_accepted,
            "BATTERY_CT_CHECKPOINT_DIR": str(work / "serving"),
            "BATTERY_CT_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "facade.cli", "serve", "api", "--port", str(port)]
        facade = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:  # ready once a model serves; each probe is a real request
                try:
                    if httpx.get(f"{url}/readyz", timeout=5).json().get("model_loaded"):
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if facade.poll() is not None or time.monotonic() > deadline:
                    said = facade.stderr.read().decode(errors="replace") if facade.stderr else ""
                    raise RuntimeError(f"the facade did not become ready: {said}")
                time.sleep(0.2)
            httpx.post(f"{url}/predict", json={"image_url": f"s3://{settings.bucket_scans}/valid.png"}, timeout=60)
            idle = rss_mb(facade.pid)
            print(f"flooding for {args.seconds:.0f} s with {args.flooders} clients ...", file=sys.stderr)
            result = asyncio.run(flood(url, settings, ("valid.png", "bomb.png"), args, facade.pid))
        finally:
            facade.terminate()
            facade.wait(timeout=60)
    from facade.api.services import SMALL_IMAGE_PIXELS, SMALL_LANE_IMAGES

    budget = settings.decode_budget()
    bound = idle + (budget + SMALL_LANE_IMAGES * SMALL_IMAGE_PIXELS) * BYTES_PER_PIXEL / 2**20
    print(
        json.dumps(
            {
                "rss_idle_mb": round(idle, 1),
                **result,
                "rss_bound_mb": round(bound, 1),
                "within_bound": float(str(result["rss_peak_mb"])) <= bound,
                "bomb_png_bytes": len(bomb),
                "bomb_pixels": (int(settings.max_image_pixels**0.5) - 1) ** 2,
                "max_image_pixels": settings.max_image_pixels,
                "decode_budget_pixels": budget,
                "flooders": args.flooders,
                "seconds": args.seconds,
                "cpus": os.cpu_count(),
                "load": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
