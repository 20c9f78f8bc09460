"""How long one retrain batch takes: 32 new normal scans on top of a dataset of 500, at 256 px.

Runs the retrain job exactly as the service does (plan with replay and the trusted holdout, warm
start, threshold, checkpoint, gate, publish and promote in a registry), with the service's
default settings, on simulated slices. The images are preprocessed in memory beforehand: the
service keeps them cached too (only the first batch after a restart fetches them from S3).

The parent model is trained on a subset of the 500 for one epoch: its patch memory is capped
per row (`bank_per_row`), so the cost of a retraining does not depend on how the parent was made.

    .venv/bin/python -m benchmarks.retrain_time [--existing 500] [--new 32] [--size 256]

With `--known-defects K` the dataset also holds K accepted defects (every simulated type in turn),
so the gate judges by image AUROC on the trusted holdout and those defects, as the service does
once operators have confirmed defects; `--poison P` paints P dark pores into every new scan, which
is still accepted as normal: a poisoned batch the gate must refuse.

    .venv/bin/python -m benchmarks.retrain_time --known-defects 24 --poison 12

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np


def slices(count: int, size: int, seed: int, *, defects: bool = False) -> list[np.ndarray]:
    """Simulated normal slices, or with `defects` every simulated type and severity in turn."""
    from model_core.imaging import preprocess
    from producers.simulator.render import render_slice
    from producers.simulator.sampling import random_spec
    from producers.simulator.spec import DEFECT_TYPES, SEVERITIES

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        spec = random_spec(rng, size, DEFECT_TYPES[i % len(DEFECT_TYPES)], SEVERITIES[i % 3]) if defects else None
        out.append(preprocess(render_slice(spec or random_spec(rng, size))[0].astype(np.float32), size))
    return out


def with_pores(image: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` dark pores (5 px radius at 256 px) inside the roll of a preprocessed slice."""
    size = image.shape[0]
    rows, cols = np.mgrid[0:size, 0:size]
    centre, radius = (size - 1) / 2, 5.0 * size / 256
    out = image.copy()
    for _ in range(count):
        angle, at = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.8) * 0.42 * size
        pore = np.hypot(rows - centre - at * np.sin(angle), cols - centre - at * np.cos(angle)) < radius
        out[pore] = image.min()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--existing", type=int, default=500, help="normal scans already in the dataset")
    parser.add_argument("--new", type=int, default=32, help="new normal scans in the batch")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels")
    parser.add_argument("--parent-scans", type=int, default=64, help="scans the parent model is trained on")
    parser.add_argument("--known-defects", type=int, default=0, help="accepted defects in the dataset (gate by AUROC)")
    parser.add_argument("--poison", type=int, default=0, help="pores painted into each new scan (labelled normal)")
    args = parser.parse_args()

    from consumers.retrain.job import RetrainJob
    from consumers.retrain.manifest import DatasetManifest, ManifestEntry, NewScan, add_scan, settle_batch
    from consumers.retrain.plan import plan_batch
    from consumers.retrain.service import training_configs
    from model_core.registry import LocalBlobStore, Registry
    from model_core.training import EpochProgress
    from schemas.settings import Settings

    started = time.perf_counter()
    images: dict[str, np.ndarray] = {}
    manifest = DatasetManifest()

    def accept(batch: list[np.ndarray], offset: int, label: Literal["normal", "defect"] = "normal") -> set[str]:
        nonlocal manifest
        changed = set()
        for i, image in enumerate(batch):
            sha = hashlib.sha256(image.tobytes()).hexdigest()
            images[sha] = image
            scan = NewScan(scan_id=f"scan-{offset + i}", sha256=sha, label=label, source=f"bench/0/{offset + i}")
            manifest, _ = add_scan(manifest, scan)
            changed.add(sha)
        return changed

    def load(entries: list[ManifestEntry], size: int) -> np.ndarray:
        return np.stack([images[e.sha256] for e in entries])

    existing = accept(slices(args.existing, args.size, seed=1), 0)
    if args.known_defects:
        existing |= accept(slices(args.known_defects, args.size, seed=3, defects=True), 10**6, label="defect")
    generated_s = time.perf_counter() - started
    settings = Settings(image_size=args.size)
    bootstrap, warm = training_configs(settings)
    epochs: list[EpochProgress] = []
    with tempfile.TemporaryDirectory() as scratch:
        registry = Registry(LocalBlobStore(Path(scratch) / "registry"), owner="benchmark")
        job = RetrainJob(
            registry,
            load,
            Path(scratch) / "work",
            bootstrap_config=bootstrap.model_copy(update={"epochs": 1}),
            warm_config=warm,
            tolerance=settings.promotion_tolerance,
            auroc_drop=settings.promotion_auroc_drop,
            progress=epochs.append,
        )
        # The parent: a model trained on part of the existing scans, promoted.
        parent_plan = plan_batch(manifest, existing, has_model=False, replay_factor=2)
        subset = dataclasses.replace(parent_plan, train=parent_plan.train[: args.parent_scans])
        t0 = time.perf_counter()
        parent = job.run(subset, "parent")
        parent_s = time.perf_counter() - t0
        manifest = settle_batch(manifest, existing, parent.version, rejected=False)

        pores = np.random.default_rng(4)
        batch = [with_pores(image, args.poison, pores) for image in slices(args.new, args.size, seed=2)]
        changed = accept(batch, args.existing)
        epochs.clear()
        t0, cpu0 = time.perf_counter(), time.process_time()
        plan = plan_batch(manifest, changed, has_model=True, replay_factor=2)
        candidate = job.build(plan, "benchmark")
        built_s = time.perf_counter() - t0
        result = job.commit(candidate)
        total_s = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "benchmark": "retrain_time",
                "image_size": args.size,
                "existing_scans": args.existing,
                "new_scans": args.new,
                "known_defects": args.known_defects,
                "poison_pores_per_scan": args.poison,
                "training_scans": len(plan.train),
                "replayed_scans": len(plan.replay),
                "holdout_scans": len(plan.holdout),
                "epochs_max": warm.epochs,
                "epochs_run": len(epochs),
                "retrain_seconds": round(total_s, 1),
                "train_and_gate_seconds": round(built_s, 1),
                "publish_seconds": round(total_s - built_s, 1),
                # CPU time of all threads: with the machine shared, cpu_seconds / cpus is what the
                # batch would take with both cores to itself.
                "cpu_seconds": round(cpu_s, 1),
                "within_3_minutes": total_s <= 180,
                "status": result.status,
                "gate": result.reason,
                "parent_seconds": round(parent_s, 1),
                "generate_seconds": round(generated_s, 1),
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
