"""Measurement accuracy and cost on simulated cells whose true geometry the simulator records.

    .venv/bin/python -m benchmarks.metrology                 # 40 slices at 512 px, 40 at 256 px, 40 volumes
    .venv/bin/python -m benchmarks.metrology --quick         # a small run

1. slices (`producers.simulator.random_spec`, half of them with a can dent): each measured
   (`model_core.metrology.measure.measure_slice`, every family) at a pixel size that makes the can
   21 mm across (a 21700 cell), against `producers.simulator.metrology_truth.can_truth` and the
   spec's core radius: the largest and the 95th-percentile absolute error per measurement;
2. cell-end volumes (`producers.simulator.cell_end.random_cell_end_spec`, half with a local
   negative overhang): the overhang per sector against the truth, and how often a negative
   overhang is found where it is and where it is not;
3. time: measuring a slice (every family; 256 and 512 px) against the detector scoring one
   (a small detector trained here on simulated 256 px slices, or --checkpoint), batched.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

TARGETS_MM = {
    "can.outer_diameter_mm": 0.05,
    "can.inner_diameter_mm": 0.05,
    "can.wall_mean_mm": 0.03,
    "can.wall_min_mm": 0.03,
    "can.eccentricity": 0.01,
    "can.max_dent_mm": 0.05,
}
CAN_DIAMETER_MM = 21.0


def _errors(pairs: Sequence[tuple[float, float | None]]) -> dict[str, Any]:
    errors = np.array([abs(m - t) for t, m in pairs if m is not None], dtype=np.float64)
    missed = sum(m is None for _, m in pairs)
    if errors.size == 0:
        return {"n": 0, "null": missed}
    return {
        "n": int(errors.size),
        "null": missed,
        "max": round(float(errors.max()), 4),
        "p95": round(float(np.percentile(errors, 95)), 4),
        "median": round(float(np.median(errors)), 4),
    }


def slice_accuracy(count: int, size: int, seed: int) -> dict[str, Any]:
    from model_core.metrology.measure import measure_slice
    from producers.simulator.metrology_truth import can_truth
    from producers.simulator.render import render_slice
    from producers.simulator.sampling import random_spec

    rng = np.random.default_rng(seed)
    pairs: dict[str, list[tuple[float, float | None]]] = {}
    seconds = []
    for index in range(count):
        spec = random_spec(rng, size, "can_dent" if index % 2 else None)
        pixel_mm = CAN_DIAMETER_MM / 2 / spec.cell.radius
        image, _ = render_slice(spec)
        started = time.perf_counter()
        measured = measure_slice(image, pixel_mm).measurements
        seconds.append(time.perf_counter() - started)
        truth = can_truth(spec, pixel_mm) | {"roll.core_diameter_mm": 2 * spec.cell.core_radius * pixel_mm}
        for name, true in truth.items():
            if name in measured and (name != "can.max_dent_mm" or spec.defect is not None):
                pairs.setdefault(name, []).append((true, measured[name].value))
    errors = {name: _errors(found) for name, found in sorted(pairs.items())}
    within = {
        name: errors[name].get("max", float("inf")) <= target for name, target in TARGETS_MM.items() if name in errors
    }
    return {
        "slices": count,
        "size": size,
        "errors": errors,
        "max_within_target": within,
        "measure_ms_per_slice": round(1000 * float(np.median(seconds)), 1),
    }


def volume_accuracy(count: int, seed: int) -> dict[str, Any]:
    from model_core.metrology.ends import measure_ends
    from producers.simulator.cell_end import random_cell_end_spec, render_cell_end

    rng = np.random.default_rng(seed)
    sector_pairs: list[tuple[float, float | None]] = []
    found = {True: 0, False: 0}
    total = {True: 0, False: 0}
    seconds = []
    for index in range(count):
        spec = random_cell_end_spec(rng, negative=index % 2 == 0)
        volume, truth = render_cell_end(spec)
        started = time.perf_counter()
        result = measure_ends(volume, spec.pixel_mm, spec.slice_mm, sectors=spec.sectors)
        seconds.append(time.perf_counter() - started)
        measured = result.measurements["overhang.sectors"].sectors or ()
        by_angle = {round(s.angle_deg) % 360: s.overhang for s in measured}
        for sector in truth.sectors:
            sector_pairs.append((sector.overhang_mm, by_angle.get(round(sector.angle_deg) % 360)))
        total[truth.negative_overhang] += 1
        found[truth.negative_overhang] += int(result.negative_overhang)
    return {
        "volumes": count,
        "shape": list(volume.shape),
        "overhang_sector_error_mm": _errors(sector_pairs),
        "negative_found_where_present": round(found[True] / max(1, total[True]), 3),
        "negative_found_where_absent": round(found[False] / max(1, total[False]), 3),
        "measure_ms_per_volume": round(1000 * float(np.median(seconds)), 1),
    }


def detector_ms_per_slice(checkpoint: Path | None, seed: int, batch: int = 32) -> dict[str, Any]:
    """The detector's time per 256 px slice, batched (as the inference consumer scores)."""
    from benchmarks.quality import make_bench
    from model_core.detector import Detector
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.training import TrainingConfig, train_detector

    bench = make_bench(60, 1, batch, 1, 256, seed)
    if checkpoint is not None:
        core = Detector.load(checkpoint).core
    else:
        config = TrainingConfig(
            network=NetworkConfig(image_size=256), memory=PatchMemoryConfig.for_image_size(256), epochs=2, seed=seed
        )
        core = train_detector(list(bench.train), None, config).core
    images = np.stack(list(bench.test_normal)[:batch]).astype(np.float32)
    core.scores(images, threshold=1.0)  # warm: the compiled graph and the index
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        core.scores(images, threshold=1.0)
        runs.append((time.perf_counter() - started) / len(images))
    return {"detector_ms_per_slice": round(1000 * float(np.median(runs)), 1), "search": core.spec.search}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=40, help="simulated slices per size")
    parser.add_argument("--volumes", type=int, default=40, help="simulated cell-end volumes")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--checkpoint", type=Path, help="time this detector instead of training a small one")
    parser.add_argument("--quick", action="store_true", help="10 slices per size and 10 volumes")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.volumes = 10, 10
    load_start = os.getloadavg()
    at_512 = slice_accuracy(args.slices, 512, args.seed)
    at_256 = slice_accuracy(args.slices, 256, args.seed + 1)
    volumes = volume_accuracy(args.volumes, args.seed + 2)
    detector = detector_ms_per_slice(args.checkpoint, args.seed)
    share = at_256["measure_ms_per_slice"] / detector["detector_ms_per_slice"]
    out = {
        "benchmark": "metrology",
        "slices_512": at_512,
        "slices_256": at_256,
        "volumes": volumes,
        **detector,
        "measure_share_of_detector_256": round(share, 2),
        "cpus": os.cpu_count(),
        "load_avg_start": round(load_start[0], 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
