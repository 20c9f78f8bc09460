"""The CT-machine simulator: how fast it renders, and whether naive detectors fail on it (they should).

Prints one JSON line: slices per second (wall and CPU, one process) for normal and defect slices,
and the image AUROC of two naive detectors on normal vs medium-severity defect slices, per defect
type: the mean intensity of the normalised slice (|mean - median of the normals|), and the global
mean squared error against the mean normal slice. Near 0.5 = the bench is not trivially separable.

    .venv/bin/python -m benchmarks.simulator                 # 256 px, 200 normal + 25 per type
    .venv/bin/python -m benchmarks.simulator --normal 40 --per-type 5 --size 128
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normal", type=int, default=200, help="normal slices")
    parser.add_argument("--per-type", type=int, default=25, help="medium-severity slices per defect type")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    from model_core.evaluation import auroc
    from model_core.imaging import preprocess
    from producers.simulator import DEFECT_TYPES, random_defect_slice, random_normal_slice

    rng = np.random.default_rng(args.seed)
    result: dict[str, Any] = {"size": args.size}

    wall, cpu = time.perf_counter(), time.process_time()
    normal_raw = [random_normal_slice(rng, args.size)[0] for _ in range(args.normal)]
    result["normal_slices_per_s"] = round(args.normal / (time.perf_counter() - wall), 1)
    result["normal_slices_per_cpu_s"] = round(args.normal / (time.process_time() - cpu), 1)

    wall, cpu = time.perf_counter(), time.process_time()
    defects_raw = {
        t: [random_defect_slice(rng, args.size, t, "medium")[0] for _ in range(args.per_type)] for t in DEFECT_TYPES
    }
    count = args.per_type * len(DEFECT_TYPES)
    result["defect_slices_per_s"] = round(count / (time.perf_counter() - wall), 1)
    result["defect_slices_per_cpu_s"] = round(count / (time.process_time() - cpu), 1)

    normal = [preprocess(x, args.size) for x in normal_raw]
    defects = {t: [preprocess(x, args.size) for x in xs] for t, xs in defects_raw.items()}
    # the naive detectors are fitted on one half of the normals and scored on the other
    fit, held = normal[: len(normal) // 2], normal[len(normal) // 2 :]
    level = float(np.median([x.mean() for x in fit]))
    template = np.mean(fit, axis=0)

    def mean_score(x: np.ndarray) -> float:
        return abs(float(x.mean()) - level)

    def mse_score(x: np.ndarray) -> float:
        return float(np.mean((x - template) ** 2))

    for name, score in (("mean_intensity", mean_score), ("global_mse", mse_score)):
        negatives = [score(x) for x in held]
        per_type = {t: round(auroc(negatives, [score(x) for x in xs]), 3) for t, xs in defects.items()}
        overall = auroc(negatives, [score(x) for xs in defects.values() for x in xs])
        result[f"auroc_{name}"] = {"overall": round(overall, 3), "per_type_medium": per_type}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
