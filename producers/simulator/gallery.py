"""Comparison pictures for docs/SIMULATOR.md: real slices next to simulated ones, and the defects.

    .venv/bin/python -m producers.simulator.gallery --out docs/images

`real_vs_simulated_*.png`: the real slice | a simulated slice with the real one's measured geometry |
a random simulated slice, each normalised to its own 0.5-99.8 % percentiles, with a 2x zoom of the
centre below. `defects.png`: one row per defect type, low / medium / high severity (2x zoom), each
followed by the same crop with the mask's outline in red.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from producers.real_samples import real_samples
from producers.simulator.render import render_slice
from producers.simulator.sampling import random_spec
from producers.simulator.spec import DEFECT_TYPES, SEVERITIES, DefectType, Materials, SliceSpec

Gray = npt.NDArray[np.uint8]
SIZE = 256


def _gray(image: npt.NDArray[np.generic]) -> Gray:
    a = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(a, [0.5, 99.8])
    return np.asarray(np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255, dtype=np.uint8)


def _with_zoom(image: Gray) -> Gray:
    quarter = SIZE // 4
    centre = image[quarter : SIZE - quarter, quarter : SIZE - quarter].repeat(2, 0).repeat(2, 1)
    return np.concatenate([image, centre], 0)


def matched(spec: SliceSpec, measured: Measured) -> SliceSpec:
    """`spec` with the cell geometry, materials and output gain set to a real slice's measured values."""
    radius = measured.radius * SIZE
    cell = spec.cell.model_copy(
        update={
            "radius": radius,
            "pitch": measured.pitch * radius,
            "core_radius": measured.core * radius,
            "can_thickness": measured.can * radius,
            "materials": measured.materials,
        }
    )
    imaging = spec.imaging.model_copy(update={"gain": measured.gain, "offset": 0.0})
    return spec.model_copy(update={"cell": cell, "imaging": imaging})


def real_vs_simulated(real: Path, spec: SliceSpec, seed: int) -> Gray:
    real_image = np.asarray(Image.open(real))
    simulated, _ = render_slice(spec)
    other, _ = render_slice(random_spec(np.random.default_rng(seed), SIZE))
    return np.concatenate([_with_zoom(_gray(x)) for x in (real_image, simulated, other)], 1)


def _outline(crop: Gray, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    rgb = np.stack([crop] * 3, -1)
    edge = mask & ~ndimage.binary_erosion(mask)
    rgb[edge] = (255, 40, 40)
    return rgb


def defect_sheet(seed: int, half: int = 28, zoom: int = 2) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    rows = []
    for defect_type in DEFECT_TYPES:
        base = random_spec(rng, SIZE, defect_type, "low")
        tiles = []
        for severity in SEVERITIES:
            assert base.defect is not None
            spec = base.model_copy(update={"defect": base.defect.model_copy(update={"severity": severity})})
            image, mask = render_slice(spec)
            rows_, cols_ = np.nonzero(mask)
            cy = int(np.clip(rows_.mean(), half, SIZE - half))
            cx = int(np.clip(cols_.mean(), half, SIZE - half))
            window = (slice(cy - half, cy + half), slice(cx - half, cx + half))
            crop = _gray(image)[window].repeat(zoom, 0).repeat(zoom, 1)
            inside = (mask[window] > 0).repeat(zoom, 0).repeat(zoom, 1)
            tiles += [np.stack([crop] * 3, -1), _outline(crop, inside)]
        rows.append(np.concatenate(tiles, 1))
    return np.concatenate(rows, 0)


@dataclass(frozen=True)
class Measured:
    """A real slice's measurements: can radius / field of view, turn pitch / radius, hollow core /
    radius, can wall / radius, materials relative to the can, and the output gain (can = gain x 65535)."""

    radius: float
    pitch: float
    core: float
    can: float
    materials: Materials
    gain: float


def _materials(
    background: float, core: float, separator: float, anode: float, cathode: float, holder: float
) -> Materials:
    return Materials(background=background, core=core, separator=separator, anode=anode, cathode=cathode, holder=holder)


MEASURED: dict[str, Measured] = {
    # the 16-bit scanner saturates the can; its layers span 0.35-0.9 and its core is grey
    "im_1": Measured(0.432, 0.041, 0.16, 0.024, _materials(0.03, 0.1, 0.26, 0.32, 0.68, 0.12), 1.3),
    # the 8-bit volume: can 197 of 255, layers 33-78, core 10, background 0
    "cell_vol": Measured(0.424, 0.0365, 0.14, 0.017, _materials(0.0, 0.05, 0.17, 0.25, 0.36, 0.0), 0.77),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    samples = real_samples()
    rng = np.random.default_rng(args.seed)
    pairs: list[tuple[str, Path, DefectType | None]] = [
        ("im_1", samples.nominal, None),
        ("cell_vol", samples.jelly_roll[len(samples.jelly_roll) // 2], None),
        ("im_2_buckled", samples.buckled, "core_collapse"),
    ]
    for name, path, defect in pairs:
        spec = random_spec(rng, SIZE, defect, "high")
        spec = matched(spec, MEASURED["cell_vol" if name == "cell_vol" else "im_1"])
        picture = real_vs_simulated(path, spec, args.seed + len(name))
        Image.fromarray(picture).save(args.out / f"real_vs_simulated_{name}.png", optimize=True)
    Image.fromarray(defect_sheet(args.seed)).save(args.out / "defects.png", optimize=True)
    print(f"wrote {args.out}/real_vs_simulated_*.png and {args.out}/defects.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
