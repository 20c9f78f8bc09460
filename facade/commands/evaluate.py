"""`battery-ct evaluate`: how well a checkpoint separates DIR/normal from DIR/defect, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from model_core.detector import Detector, ScanScore

_BATCH = 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a checkpoint on DIR/normal and DIR/defect/<type>: AUROC, F1/P/R, pixel AUROC",
        description=(
            "Score every slice under DIR/normal/ and DIR/defect/<type>/ and print one JSON object: image "
            "AUROC of anomaly_score (and of the mean reconstruction error, for comparison), precision, "
            "recall and F1 at the checkpoint's threshold, the same per defect type, and the pixel AUROC of "
            "the anomaly maps where DIR/masks/ holds a mask for a defect slice (same relative path as "
            "under DIR/defect/, as `battery-ct synth` writes them)."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT", help="checkpoint directory")
    parser.add_argument("--data", type=Path, required=True, metavar="DIR", help="directory with normal/ and defect/")
    parser.set_defaults(handler=_run)


def find_mask(data: Path, image_path: Path) -> Path | None:
    """The mask of a defect slice: DIR/masks/<path under defect/>, any image extension."""
    relative = image_path.relative_to(data / "defect")
    for candidate in (data / "masks" / relative, data / "masks" / relative.name):
        for path in (candidate, *candidate.parent.glob(candidate.stem + ".*")):
            if path.is_file():
                return path
    return None


def _score_all(detector: Detector, images: list[np.ndarray]) -> list[ScanScore]:
    import numpy as np

    out: list[ScanScore] = []
    for start in range(0, len(images), _BATCH):
        out.extend(detector.score_batch(np.stack(images[start : start + _BATCH])))
    return out


def _defect_type(data: Path, path: Path) -> str:
    parts = path.relative_to(data / "defect").parts
    return parts[0] if len(parts) > 1 else "defect"


def evaluate_directory(detector: Detector, data: Path, *, max_pixels: int) -> dict[str, Any]:
    """The JSON report of `battery-ct evaluate`."""
    import numpy as np
    from PIL import Image

    from facade.commands.train import image_files, load_slices
    from model_core.evaluation import auroc, operating_point, pixel_auroc

    normal, bad_normal = load_slices(image_files(data / "normal"), detector.image_size, max_pixels=max_pixels)
    defect, bad_defect = load_slices(image_files(data / "defect"), detector.image_size, max_pixels=max_pixels)
    if not normal or not defect:
        raise ValueError(f"need readable slices under both {data / 'normal'} and {data / 'defect'}")
    normal_scores = _score_all(detector, [s.image for s in normal])
    defect_scores = _score_all(detector, [s.image for s in defect])
    neg = np.array([s.anomaly_score for s in normal_scores])
    neg_err = np.array([s.reconstruction_error for s in normal_scores])
    threshold = detector.threshold

    by_type: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(defect):
        by_type[_defect_type(data, item.path)].append(i)

    def summary(indices: list[int]) -> dict[str, Any]:
        pos = np.array([defect_scores[i].anomaly_score for i in indices])
        pos_err = np.array([defect_scores[i].reconstruction_error for i in indices])
        point = operating_point(neg, pos, threshold)
        return {
            "count": len(indices),
            "image_auroc": auroc(neg, pos),
            "mean_error_auroc": auroc(neg_err, pos_err),
            "precision": point.precision,
            "recall": point.recall,
            "f1": point.f1,
        }

    maps, masks = [], []
    for item, result in zip(defect, defect_scores, strict=True):
        mask_path = find_mask(data, item.path)
        if mask_path is None:
            continue
        mask = Image.open(mask_path).convert("L").resize((detector.image_size,) * 2, Image.Resampling.NEAREST)
        maps.append(result.error_map)
        masks.append(np.asarray(mask) > 0)
    report: dict[str, Any] = {
        "model_version": detector.version,
        "threshold": threshold,
        "normal": len(normal),
        "defect": len(defect),
        **summary(list(range(len(defect)))),
        "false_positive_rate": float((neg > threshold).mean()),
        "per_type": {name: summary(idx) for name, idx in sorted(by_type.items())},
        "pixel_auroc": pixel_auroc(maps, masks) if maps else None,
        "masks": len(masks),
        "unreadable": [str(path) for path, _ in bad_normal + bad_defect],
    }
    report.pop("count")
    return report


def _run(args: argparse.Namespace) -> int:
    from model_core.detector import Detector
    from model_core.errors import ModelCoreError
    from schemas.settings import Settings

    settings = Settings()
    try:
        detector = Detector.load(args.checkpoint, search=settings.detector_search)
        report = evaluate_directory(detector, args.data, max_pixels=settings.max_image_pixels)
    except (ModelCoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0
