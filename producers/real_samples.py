"""Paths of the small real XCT slices shipped with the package (for the demo and sanity checks).

They are 256 px area-averaged copies of slices from MPJ-Imaging/battery_xct_workflows (MIT; see
`producers/data/real/ATTRIBUTION.md`): one nominal and one buckled 16-bit slice of one scanner, and
12 8-bit jelly-roll slices of another cell. To remake them from the originals:

    Image.fromarray(np.asarray(Image.open(tif), np.float32)).resize((256, 256), Image.Resampling.BOX)
    -> rounded, saved as PNG in the original bit depth
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REAL_DIR = Path(__file__).resolve().parent / "data" / "real"


@dataclass(frozen=True)
class RealSamples:
    """`nominal`: a normal 16-bit slice; `buckled`: the same scanner's slice of a cell with buckled
    electrodes near the centre (16-bit); `jelly_roll`: normal 8-bit slices of another cell."""

    nominal: Path
    buckled: Path
    jelly_roll: tuple[Path, ...]
    licence: Path
    attribution: Path

    @property
    def normal(self) -> tuple[Path, ...]:
        """Every slice of a normal cell."""
        return (self.nominal, *self.jelly_roll)


def real_samples(directory: Path = REAL_DIR) -> RealSamples:
    """The shipped real slices; `FileNotFoundError` names what is missing (e.g. an install without package data)."""
    samples = RealSamples(
        nominal=directory / "im_1.png",
        buckled=directory / "im_2.png",
        jelly_roll=tuple(sorted(directory.glob("cell_vol_im*.png"))),
        licence=directory / "LICENSE",
        attribution=directory / "ATTRIBUTION.md",
    )
    missing = [p for p in (samples.nominal, samples.buckled, samples.licence, samples.attribution) if not p.is_file()]
    if missing or not samples.jelly_roll:
        names = ", ".join(str(p) for p in missing) or f"{directory}/cell_vol_im*.png"
        raise FileNotFoundError(f"real sample slices missing: {names}")
    return samples
