"""Detector speed: the exact reference path against the fast one, in one run, on the same slices.

Trains one detector on the quality bench's slices (`benchmarks.quality.make_bench`; a training
produces the fast form), then scores the bench's test set with the same trained parts through
both paths (`search="exact"` and `search="fast"`, interleaved batch by batch so that a shared
machine's load falls on both alike) and prints one JSON line: slices/s batched,
single-slice latency p50/p99, the speed-up, per-stage times per slice (unwrap, features, search,
map, autoencoder), peak resident memory, image AUROC and pixel AUROC of both,
the fast search's recall@1 against the exact one, and the machine's load average at start and end.

    .venv/bin/python -m benchmarks.detector_speed            # the full bench (several minutes on 2 cores)
    .venv/bin/python -m benchmarks.detector_speed --quick    # a small run
    .venv/bin/python -m benchmarks.detector_speed --checkpoint DIR   # score a saved checkpoint instead of training
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _timed(function: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    started = time.perf_counter()
    result = None
    for _ in range(repeat):
        result = function()
    return result, (time.perf_counter() - started) / repeat


def _stages_exact(core: Any, images: np.ndarray) -> dict[str, float]:
    """Seconds per slice of each step of the exact path, run step by step on one batch."""
    from scipy import ndimage

    from model_core.patch_memory import patches
    from model_core.scoring import column_trend, image_anomaly_map, slice_score

    config, view = core.spec.memory, core.view
    count = len(images)

    def unwrap() -> list[tuple[np.ndarray, Any]]:
        out = []
        for image in images:
            location = view.locate(image)
            smooth = ndimage.gaussian_filter(image.astype(np.float32), sigma=config.denoise)
            out.append((view.unroll(smooth, location, config.grid), location))
        return out

    unrolled, unwrap_s = _timed(unwrap)

    def features() -> list[np.ndarray]:
        out = []
        for grid, _ in unrolled:
            short = grid - column_trend(grid, max(3, round(config.detrend * config.columns)), wrap=view.wraps)
            long = grid - column_trend(grid, max(3, round(config.detrend_long * config.columns)), wrap=view.wraps)
            out.append(np.stack([short, config.detrend_long_weight * long]))
        return out

    grids, features_s = _timed(features)
    _, patches_s = _timed(lambda: [patches(grid, config, wrap=view.wraps) for grid in grids])
    maps, search_s = _timed(lambda: [core.memory.patch_map(grid) for grid in grids])

    def draw() -> None:
        for patch_map, (_, location) in zip(maps, unrolled, strict=True):
            slice_score(patch_map, config)
            image_anomaly_map(patch_map, location, config, images.shape[1:], view)

    _, map_s = _timed(draw)
    _, autoencoder_s = _timed(lambda: core.reconstruction_errors(images))
    return {
        "unwrap": round(1000 * unwrap_s / count, 2),
        # the exact search cuts its own patches inside patch_map; features = detrend + patches
        "features": round(1000 * (features_s + patches_s) / count, 2),
        "search": round(1000 * max(search_s - patches_s, 0.0) / count, 2),
        "map": round(1000 * map_s / count, 2),
        "autoencoder": round(1000 * autoencoder_s / count, 2),
    }


def _stages_fast(core: Any, images: np.ndarray) -> dict[str, float]:
    """Seconds per slice of each step of the fast path, with its threads, on one batch."""
    from threadpoolctl import ThreadpoolController

    from model_core import fast_path
    from model_core.scoring import slice_score

    config, view = core.spec.memory, core.view
    count = len(images)
    with ThreadPoolExecutor(core.threads) as pool, ThreadpoolController().limit(limits=1, user_api="blas"):

        def unwrap(image: np.ndarray) -> tuple[np.ndarray, Any]:
            location = view.locate_fast(image)
            return view.unroll_fast(fast_path.denoise(image, config.denoise), location, config.grid), location

        unrolled, unwrap_s = _timed(lambda: list(pool.map(unwrap, images)))
        stacked = np.stack([grid for grid, _ in unrolled])

        def features() -> np.ndarray:
            windows = [
                max(3, round(config.detrend * config.columns)),
                max(3, round(config.detrend_long * config.columns)),
            ]
            short, long = (
                stacked - trend for trend in pool.map(lambda w: fast_path.column_trends(stacked, w), windows)
            )
            return np.stack([short, config.detrend_long_weight * long], axis=1)

        grids, features_s = _timed(features)
        # the fast path cuts each patch row's patches inside its search (one row of the batch at a time)
        maps, search_s = _timed(lambda: core.memory.fast_patch_maps(grids, pool.map))

        def draw() -> None:
            def one(item: tuple[np.ndarray, tuple[np.ndarray, Any]]) -> None:
                slice_score(item[0], config)
                fast_path.anomaly_map(item[0], item[1][1], config, images.shape[1:], view)

            list(pool.map(one, zip(maps, unrolled, strict=True)))

        _, map_s = _timed(draw)
    _, autoencoder_s = _timed(lambda: core.reconstruction_errors(images))
    return {
        "unwrap": round(1000 * unwrap_s / count, 2),
        "features": round(1000 * features_s / count, 2),
        "search": round(1000 * search_s / count, 2),
        "map": round(1000 * map_s / count, 2),
        "autoencoder": round(1000 * autoencoder_s / count, 2),
    }


def _recall(core: Any, images: np.ndarray) -> float:
    """How often the fast search finds the exact search's nearest patch, over one batch."""
    from model_core import fast_path
    from model_core.patch_memory import _nearest, patch_rows, row_patches

    config, memory = core.spec.memory, core.memory
    grids, _ = fast_path.layer_grids(images, config, core.view)
    index = memory._fast_index
    hits = total = 0
    for row in range(patch_rows(grids, config)):
        queries = row_patches(grids, row, config, wrap=core.view.wraps)
        _, exact = _nearest(queries, memory._neighbours[row], memory._bank_sq[row])
        _, found = index.nearest(row, queries, index.projection(queries))
        hits += int((exact == found).sum())
        total += exact.size
    return hits / total


def _measure(cores: dict[str, Any], bench: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Both paths on the same slices, interleaved batch by batch and call by call, so that a
    machine shared with others slows both alike: throughput, latency, stages, AUROC, memory."""
    from model_core.evaluation import auroc, pixel_auroc

    normal, defect, masks = bench.test_normal, bench.test_defect, bench.defect_masks
    images = np.concatenate([normal, defect])
    for core in cores.values():
        core.scores(images[: args.batch], np.inf)  # warm-up: traces the autoencoder, touches the caches
    seconds = dict.fromkeys(cores, 0.0)
    scores: dict[str, list[Any]] = {name: [] for name in cores}
    for start in range(0, len(images), args.batch):
        for name, core in cores.items():
            started = time.perf_counter()
            scores[name].extend(core.scores(images[start : start + args.batch], np.inf))
            seconds[name] += time.perf_counter() - started
    latencies: dict[str, list[float]] = {name: [] for name in cores}
    for image in images[: args.latency_slices]:
        for name, core in cores.items():
            started = time.perf_counter()
            core.scores(image[None], np.inf)
            latencies[name].append(time.perf_counter() - started)
    out = {}
    for name, core in cores.items():
        anomaly = np.array([s.anomaly_score for s in scores[name]])
        stages = _stages_fast if core.search == "fast" else _stages_exact
        out[name] = {
            "slices_per_second": round(len(images) / seconds[name], 2),
            "latency_ms_p50": round(1000 * float(np.percentile(latencies[name], 50)), 2),
            "latency_ms_p99": round(1000 * float(np.percentile(latencies[name], 99)), 2),
            "stage_ms_per_slice": stages(core, images[: args.batch]),
            "image_auroc": round(auroc(anomaly[: len(normal)], anomaly[len(normal) :]), 4),
            "pixel_auroc": round(pixel_auroc([s.error_map for s in scores[name][len(normal) :]], list(masks)), 4),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=500, help="normal training slices")
    parser.add_argument("--known-per-type", type=int, default=3)
    parser.add_argument("--test-normal", type=int, default=100)
    parser.add_argument("--per-type", type=int, default=30, help="test slices per defect type")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--batch", type=int, default=32, help="slices per score_batch call")
    parser.add_argument("--latency-slices", type=int, default=100, help="single-slice calls timed per path")
    parser.add_argument("--checkpoint", type=Path, help="score this checkpoint instead of training one")
    parser.add_argument("--save", type=Path, help="save the trained checkpoint here")
    parser.add_argument(
        "--quick", action="store_true", help="a small run: 60 training, 20 normal and 6 per type test slices, 2 epochs"
    )
    args = parser.parse_args()
    if args.quick:
        args.train, args.test_normal, args.per_type, args.epochs, args.latency_slices = 60, 20, 6, 2, 20
    load_start = os.getloadavg()

    from benchmarks.quality import make_bench
    from model_core.detector import Detector, DetectorCore
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.training import TrainingConfig, train_detector

    size = args.image_size
    bench = make_bench(args.train, args.known_per_type, args.test_normal, args.per_type, size, args.seed)
    training_s = 0.0
    if args.checkpoint is not None:
        trained = Detector.load(args.checkpoint).core
    else:
        config = TrainingConfig(
            network=NetworkConfig(image_size=size),
            memory=PatchMemoryConfig.for_image_size(size),
            epochs=args.epochs,
            seed=args.seed,
        )
        started = time.monotonic()
        result = train_detector(list(bench.train), list(bench.known), config)
        training_s = time.monotonic() - started
        if args.save is not None:
            result.save(args.save, source="detector-speed")
        trained = result.core
    exact = DetectorCore(trained.spec, trained.autoencoder, trained.memory, search="exact")
    fast = DetectorCore(trained.spec, trained.autoencoder, trained.memory, search="fast")
    rss_before = _peak_rss_mb()
    results = _measure({"exact": exact, "fast": fast}, bench, args)
    out: dict[str, Any] = {
        "image_size": size,
        "train_normal": args.train,
        "test_slices": len(bench.test_normal) + len(bench.test_defect),
        "batch": args.batch,
        "threads": fast.threads,
        "cpus": os.cpu_count(),
        **results,
        "speedup_batched": round(results["fast"]["slices_per_second"] / results["exact"]["slices_per_second"], 2),
        "speedup_latency_p50": round(results["exact"]["latency_ms_p50"] / results["fast"]["latency_ms_p50"], 2),
        "image_auroc_delta": round(results["fast"]["image_auroc"] - results["exact"]["image_auroc"], 4),
        "pixel_auroc_delta": round(results["fast"]["pixel_auroc"] - results["exact"]["pixel_auroc"], 4),
        # one process holds both paths: the peak covers the two (the fast index is a few MB)
        "peak_rss_mb_before_scoring": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
        "fast_search_recall_at_1": round(_recall(fast, bench.test_defect[: args.batch]), 4),
        "fast_index": trained.spec.fast.model_dump(),
        "training_seconds": round(training_s, 1),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
