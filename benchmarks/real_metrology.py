"""The measurements of the real XCT data, for comparison with an independent implementation.

    .venv/bin/python -m benchmarks.real_metrology            # JSON on stdout
    .venv/bin/python -m benchmarks.real_metrology --table    # the same as readable tables

- the can of `cell_vol/im075.tif` and of every roll slice of the volume (im061-im100), pixel
  0.03397 mm, and the can over those slices (median, extremes along z);
- the winding deviation per layer of `im_1.tif` (nominal) and `im_2.tif` (buckled): no pixel size
  is given with them, so in px, and in mm at the volume's pixel as an assumption;
- the anode overhang per angle sector of the 100-slice volume (slice spacing 0.06794 mm, twice the
  pixel, as the source's notebooks take it).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from schemas.measurements import Measurement, MeasurementName

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "battery_xct_workflows"
PIXEL_MM = 0.03397
SLICE_MM = 2 * PIXEL_MM
ROLL_SLICES = range(61, 101)


def _values(measurements: Mapping[MeasurementName, Measurement], prefix: str) -> dict[str, float | None]:
    return {
        name: None if m.value is None else round(float(m.value), 4)
        for name, m in measurements.items()
        if name.startswith(prefix)
    }


def measure_all(data: Path) -> dict[str, Any]:
    import tifffile

    from model_core.metrology.can import can_along_z, measure_can
    from model_core.metrology.ends import measure_ends
    from model_core.metrology.measure import body_only
    from model_core.metrology.roll import measure_roll

    volume_dir = data / "cell_vol"
    volume = np.stack([tifffile.imread(volume_dir / f"im{i:03d}.tif") for i in range(1, 101)])
    roll_cans = [measure_can(volume[i - 1], PIXEL_MM) for i in ROLL_SLICES]
    per_slice = {f"im{i:03d}": _values(c.measurements, "can.") for i, c in zip(ROLL_SLICES, roll_cans, strict=True)}
    along_z = {
        name: {"median": m.value, **(m.along_z.model_dump() if m.along_z else {})}
        for name, m in can_along_z(body_only(roll_cans)).items()
    }
    winding: dict[str, Any] = {}
    for name in ("im_1", "im_2"):
        result = measure_roll(tifffile.imread(data / f"{name}.tif"), None)
        deviation = result.measurements["roll.layer_max_deviation_mm"]
        winding[name] = {
            "turns": result.measurements["roll.turns"].value,
            "core_diameter_px": result.measurements["roll.core_diameter_mm"].value,
            "layers": [
                {
                    "layer": layer.layer,
                    "max_px": round(layer.max_abs, 2),
                    "max_mm_at_0.03397": round(layer.max_abs * PIXEL_MM, 4),
                    "angle_deg": round(layer.angle_deg, 1),
                }
                for layer in deviation.layers or ()
            ],
        }
    axis_cans = [c.fit for c in body_only(roll_cans) if c.fit is not None]
    axis = (float(np.median([f.centre_row for f in axis_cans])), float(np.median([f.centre_col for f in axis_cans])))
    ends = measure_ends(volume, PIXEL_MM, SLICE_MM, axis=axis)
    sectors = ends.measurements["overhang.sectors"].sectors or ()
    return {
        "pixel_mm": PIXEL_MM,
        "slice_mm": SLICE_MM,
        "can_im075": per_slice["im075"],
        "can_roll_slices": per_slice,
        "can_along_z": along_z,
        "winding": winding,
        "overhang": {
            **_values(ends.measurements, "overhang."),
            "min_angle_deg": ends.measurements["overhang.min_mm"].angle_deg,
            "negative_overhang": ends.negative_overhang,
            "end_side": ends.end_side,
            "sectors": [s.model_dump() for s in sectors],
        },
    }


def _table(result: dict[str, Any]) -> str:
    lines = ["can per roll slice (mm): outer, inner, wall mean/min/max/3sigma, eccentricity, dent @ angle"]
    for name, v in result["can_roll_slices"].items():
        lines.append(
            f"  {name}  {v['can.outer_diameter_mm']:.4f}  {v['can.inner_diameter_mm']:.4f}  "
            f"{v['can.wall_mean_mm']:.4f}/{v['can.wall_min_mm']:.4f}/{v['can.wall_max_mm']:.4f}/"
            f"{v['can.wall_3sigma_mm']:.4f}  {v['can.eccentricity']:.4f}  "
            f"{v['can.max_dent_mm']:.4f} @ {v['can.max_dent_angle_deg']:.1f}"
        )
    lines.append("winding deviation per layer (px; mm at 0.03397): im_1 | im_2")
    one, two = result["winding"]["im_1"]["layers"], result["winding"]["im_2"]["layers"]
    for i in range(max(len(one), len(two))):
        a = f"{one[i]['max_px']:6.2f} ({one[i]['max_mm_at_0.03397']:.3f})" if i < len(one) else " " * 14
        b = f"{two[i]['max_px']:6.2f} ({two[i]['max_mm_at_0.03397']:.3f})" if i < len(two) else ""
        lines.append(f"  layer {i + 1:2d}  {a} | {b}")
    lines.append("overhang per sector (mm): angle, cathode end, anode end, overhang")
    for s in result["overhang"]["sectors"]:
        cells = [s["cathode_end"], s["anode_end"], s["overhang"]]
        lines.append(f"  {s['angle_deg']:5.1f}  " + "  ".join("  -   " if c is None else f"{c:.3f}" for c in cells))
    o = result["overhang"]
    lines.append(
        f"  min {o['overhang.min_mm']} at {o['min_angle_deg']} deg, mean {o['overhang.mean_mm']}, "
        f"sigma {o['overhang.sigma_mm']}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with im_1.tif, im_2.tif, cell_vol/")
    parser.add_argument("--table", action="store_true", help="print tables instead of one JSON line")
    args = parser.parse_args()
    result = measure_all(args.data)
    print(_table(result) if args.table else json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
