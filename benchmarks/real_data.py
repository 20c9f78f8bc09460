"""The detector on real XCT slices: train on nominal slices, flag the buckled cell, show where.

Training set: the jelly-roll slices of `cell_vol` (im061-im100, 8-bit, one commercial cell) and
augmented copies of `im_1.tif` (16-bit, the only nominal slice of the other scanner). Scored:
`im_1` (nominal, seen in training through its copies), `im_2` (electrode buckling at the centre)
and a held-out fresh augmentation of `im_1`. Heat maps go to --out; prints one JSON line.
The training and scoring are `model_core.spot_check` (the demo's real-data section uses it too).

    .venv/bin/python -m benchmarks.real_data --out /tmp/real-heatmaps
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "battery_xct_workflows"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with im_1.tif, im_2.tif, cell_vol/")
    parser.add_argument("--out", type=Path, default=Path("real-heatmaps"), help="where the heat-map PNGs go")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--copies", type=int, default=40, help="augmented copies of im_1 in the training set")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from model_core.heatmap import render_heatmap_png
    from model_core.imaging import load_image_file, preprocess
    from model_core.network import NetworkConfig
    from model_core.scoring import PatchMemoryConfig
    from model_core.spot_check import augmented_copies, spot_check
    from model_core.training import TrainingConfig

    size = args.image_size
    max_pixels = 64 * 1024 * 1024

    def load(name: str) -> np.ndarray:
        return preprocess(load_image_file(args.data / name, max_pixels=max_pixels), size)

    volume = [load(f"cell_vol/im{i:03d}.tif") for i in range(61, 101)]
    im_1, im_2 = load("im_1.tif"), load("im_2.tif")
    config = TrainingConfig(
        network=NetworkConfig(image_size=size),
        memory=PatchMemoryConfig.for_image_size(size),
        epochs=args.epochs,
        seed=args.seed,
    )
    probes = {
        "im_1": im_1,
        "im_2": im_2,
        "im_1_fresh_copy": augmented_copies(im_1, 1, args.seed + 1000)[0],
        "cell_vol_im060_cap_region": load("cell_vol/im060.tif"),
    }
    check = spot_check(volume, im_1, probes, config, copies=args.copies)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, probe in check.probes.items():
        (args.out / f"{name}.png").write_bytes(render_heatmap_png(probe.image, probe.error_map))
        results[name] = {
            "anomaly_score": round(probe.anomaly_score, 4),
            "reconstruction_error": round(probe.reconstruction_error, 6),
            "is_anomaly": probe.is_anomaly,
            "peak_row_col": list(probe.peak()),
            "peak_offset_from_centre_px": round(probe.peak_offset_from_centre(), 1),
        }
    print(
        json.dumps(
            {
                "image_size": size,
                "training_slices": check.training_slices,
                "threshold": round(check.threshold, 4),
                "threshold_rule": check.threshold_rule,
                "training_seconds": round(check.training_seconds, 1),
                "heatmaps": str(args.out),
                "scores": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
