"""/predict latency of the HTTP facade next to its floor: the bare model on one image plus one S3 GET.

Needs a running broker and S3 endpoint (`eval "$(battery-ct infra up --env)"`), then:

    python -m benchmarks.api_latency --requests 200 --size 256

1. simulates slices (16-bit PNG), uploads them to a fresh scans bucket; trains a quick detector
   (or takes `--checkpoint`) and publishes and promotes it in a fresh registry bucket;
2. bare model: `score_batch` on one preprocessed image at a time (p50, p99);
3. one S3 GET: `ObjectStore.get_bytes` of the same objects (p50, p99);
4. the facade under uvicorn in this process (a server thread), `/predict` sequentially over
   HTTP with keep-alive, every request a different scan (p50, p99).

Prints one JSON object: predict_p50_ms, predict_p99_ms, bare_model_p50_ms, s3_get_p50_ms,
floor_p50_ms (bare + S3 GET), ratio (predict p50 / floor), accepted (ratio <= 1.5), and what it
ran with.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from schemas.settings import Settings

log = logging.getLogger("benchmarks.api_latency")
ACCEPTANCE_RATIO = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="timed /predict requests (default 200)")
    parser.add_argument("--scans", type=int, default=50, help="distinct scans the requests cycle through (default 50)")
    parser.add_argument("--size", type=int, default=256, help="slice and model size in pixels (default 256)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: train a quick one)")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "n": len(samples_s)}


def timed(fn: Any, count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


class ServerThread:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from benchmarks.throughput import quick_checkpoint, simulated_pngs
    from facade.api.app import create_app
    from model_core.detector import Detector
    from model_core.imaging import decode_image, preprocess
    from model_core.registry import Registry
    from storage.object_store import ObjectStore
    from storage.registry_store import S3BlobStore

    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="api-latency-") as tmp:
        work = Path(tmp)
        settings = Settings(
            bucket_scans=f"bench-scans-{run_id}",
            bucket_models=f"bench-models-{run_id}",
            bucket_heatmaps=f"bench-heatmaps-{run_id}",
            topic_model_updates=f"bench.model-updates.{run_id}",
            topic_accepted=f"bench.accepted.{run_id}",
            checkpoint_dir=work / "serving",
            image_size=args.size,
        )
        store = ObjectStore.from_settings(settings)
        for bucket in (settings.bucket_scans, settings.bucket_models, settings.bucket_heatmaps):
            store.ensure_bucket(bucket)
        print(f"simulating {args.scans} slices of {args.size} px ...", file=sys.stderr)
        pngs = simulated_pngs(args.scans, args.size, args.seed)
        keys = [f"bench/{i:05d}.png" for i in range(len(pngs))]
        for key, png in zip(keys, pngs, strict=True):
            store.put_bytes(settings.bucket_scans, key, png, content_type="image/png")
        checkpoint = args.checkpoint or quick_checkpoint(args.size, work, args.seed)
        registry = Registry(S3BlobStore(store, settings.bucket_models))
        version = registry.publish(checkpoint)
        registry.promote(version)

        print("bare model, one image at a time ...", file=sys.stderr)
        detector = Detector.load(registry.fetch(version, work / "bare"))
        images = [preprocess(decode_image(p, max_pixels=settings.max_image_pixels), detector.image_size) for p in pngs]
        detector.score_batch(images[0][None])  # trace outside the timing
        bare = timed(lambda i: detector.score_batch(images[i % len(images)][None]), args.requests)

        print("one S3 GET per object ...", file=sys.stderr)
        get = timed(
            lambda i: store.get_bytes(settings.bucket_scans, keys[i % len(keys)], max_bytes=settings.max_object_bytes),
            args.requests,
        )

        print("/predict through uvicorn ...", file=sys.stderr)
        server = ServerThread(create_app(settings))
        url = server.start()
        try:
            with httpx.Client(base_url=url, timeout=120) as http:
                deadline = time.monotonic() + 120
                while http.get("/readyz").status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the facade never became ready: {http.get('/readyz').text}")
                    time.sleep(0.1)

                def predict(i: int) -> None:
                    body = {"image_url": f"s3://{settings.bucket_scans}/{keys[i % len(keys)]}"}
                    answer = http.post("/predict", json=body)
                    answer.raise_for_status()

                timed(predict, args.warmup)
                served = timed(predict, args.requests)
        finally:
            server.stop()

    result_predict, result_bare, result_get = percentiles(served), percentiles(bare), percentiles(get)
    floor = result_bare["p50_ms"] + result_get["p50_ms"]
    ratio = result_predict["p50_ms"] / floor
    print(
        json.dumps(
            {
                "predict_p50_ms": round(result_predict["p50_ms"], 2),
                "predict_p99_ms": round(result_predict["p99_ms"], 2),
                "bare_model_p50_ms": round(result_bare["p50_ms"], 2),
                "bare_model_p99_ms": round(result_bare["p99_ms"], 2),
                "s3_get_p50_ms": round(result_get["p50_ms"], 2),
                "s3_get_p99_ms": round(result_get["p99_ms"], 2),
                "floor_p50_ms": round(floor, 2),
                "ratio": round(ratio, 3),
                "accepted": ratio <= ACCEPTANCE_RATIO,
                "requests": args.requests,
                "size": args.size,
                "model_version": version,
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
