"""The demo's measurements: a recipe set from a golden batch, and the report's measurement section.

A plant sets a new line's tolerances from a batch of cells known to be good; the demo does the
same: it measures simulated normal cells, and each checked measurement's range is its median
plus or minus a few robust standard deviations (one-sided for what should be small: dents,
ellipse, buckling). The stream's cells are then measured against that recipe by the inference
consumer, and the report shows what conformed, what failed and where a can dent is, and the anode
overhang per angle of a simulated cell end (the demo streams slices; the overhang needs a volume).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from examples.demo.plots import Level, Line, line_svg
from examples.demo.scans import SimulatedScan
from schemas.measurements import MeasurementName
from schemas.recipes import Recipe, Tolerance
from schemas.settings import Settings
from schemas.verdicts import Verdict

RECIPE_NAME = "demo-21700"
SPREAD = 5.0  # robust standard deviations from the golden batch's median to a limit
FLOOR = {"can.outer_diameter_mm": 0.02, "can.wall_min_mm": 0.01}  # the smallest sigma a limit uses (mm)
TWO_SIDED: tuple[MeasurementName, ...] = ("can.outer_diameter_mm",)
LOWER: tuple[MeasurementName, ...] = ("can.wall_min_mm",)
UPPER: tuple[MeasurementName, ...] = ("can.eccentricity", "can.max_dent_mm", "roll.layer_max_deviation_mm")


def golden_recipe(scans: Sequence[SimulatedScan], name: str = RECIPE_NAME) -> Recipe | None:
    """A recipe from good cells' measurements; None when none of them could be measured (tiny slices)."""
    from model_core.metrology.measure import measure_slice

    measured = [measure_slice(scan.image, scan.pixel_mm).measurements for scan in scans]
    tolerances: dict[MeasurementName, Tolerance] = {}
    for key in (*TWO_SIDED, *LOWER, *UPPER):
        values = [v for m in measured if key in m and (v := m[key].value) is not None]
        if len(values) < max(5, len(scans) // 2):
            continue
        median = statistics.median(values)
        sigma = max(1.4826 * statistics.median(abs(v - median) for v in values), FLOOR.get(key, 0.005))
        low, high = median - SPREAD * sigma, median + SPREAD * sigma
        if key in TWO_SIDED:
            tolerances[key] = Tolerance(nominal=round(median, 4), min=round(low, 4), max=round(high, 4))
        elif key in LOWER:
            tolerances[key] = Tolerance(nominal=round(median, 4), min=round(max(low, 0.0), 4))
        else:
            tolerances[key] = Tolerance(nominal=round(median, 4), max=round(max(high, max(values)), 4))
    if not tolerances:
        return None
    return Recipe(
        name=name,
        description=f"set by the demo from {len(scans)} simulated good cells (median +- {SPREAD:g} robust sigma)",
        tolerances=tolerances,
    )


def publish_recipe(settings: Settings, recipe: Recipe) -> Recipe:
    from facade.commands.recipes import open_recipe_book

    stored, _ = open_recipe_book(settings, create=True).add(recipe)
    return stored


@dataclass(frozen=True)
class MeasurementSection:
    recipe: Recipe
    conforming: int
    failing: int
    unknown: int
    failed_checks: dict[str, int]  # measurement name -> cells failing it
    out_by_truth: dict[str, tuple[int, int]]  # "normal" or defect type -> (out of tolerance, judged)
    dent_svg: str | None
    dent_caption: str
    overhang_svg: str
    overhang_caption: str


def measurement_section(
    recipe: Recipe, scans: Sequence[SimulatedScan], verdicts: dict[str, Verdict], *, seed: int
) -> MeasurementSection:
    conforming = failing = unknown = 0
    failed_checks: dict[str, int] = {}
    out_by_truth: dict[str, tuple[int, int]] = {}
    for scan in scans:
        verdict = verdicts.get(scan.scan_id)
        if verdict is None:
            continue
        truth = scan.defect_type or "normal"
        out, total = out_by_truth.get(truth, (0, 0))
        out_by_truth[truth] = (out + (verdict.conforms is False), total + 1)
        if verdict.conforms is True:
            conforming += 1
        elif verdict.conforms is False:
            failing += 1
            for name in verdict.conformance.failed if verdict.conformance else ():
                failed_checks[name] = failed_checks.get(name, 0) + 1
        else:
            unknown += 1
    dent_svg, dent_caption = _dent_plot(recipe, scans, verdicts)
    overhang_svg, overhang_caption = _overhang_plot(seed)
    return MeasurementSection(
        recipe, conforming, failing, unknown, failed_checks, out_by_truth, dent_svg, dent_caption, overhang_svg,
        overhang_caption,
    )  # fmt: skip


def _dent_plot(recipe: Recipe, scans: Sequence[SimulatedScan], verdicts: dict[str, Verdict]) -> tuple[str | None, str]:
    """The dent profile of the cell with the deepest measured dent, against the recipe's limit."""
    from model_core.metrology.can import measure_can

    def depth(scan: SimulatedScan) -> float:
        verdict = verdicts.get(scan.scan_id)
        found = verdict.measurements.get("can.max_dent_mm") if verdict and verdict.measurements else None
        return found.value if found is not None and found.value is not None else -1.0

    deepest = max(scans, key=depth, default=None)
    if deepest is None or depth(deepest) < 0:
        return None, "No can was measured in this run."
    can = measure_can(deepest.image, deepest.pixel_mm)
    if can.fit is None:
        return None, "No can was measured in this run."
    lines = [Line("inward deviation from the fitted ellipse", list(can.fit.angles_deg), list(can.fit.inward_depth))]
    limit = recipe.tolerances.get("can.max_dent_mm")
    levels = [Level(f"max dent {limit.max:.3f} mm", limit.max)] if limit and limit.max is not None else []
    truth = f"{deepest.defect_type} ({deepest.severity})" if deepest.defect_type else "normal"
    caption = (
        f"{deepest.scan_id} (truth: {truth}): deepest inward dent {depth(deepest):.3f} mm; the can's radius "
        "against the ellipse fitted to it, around the cell."
    )
    return line_svg(lines, x_label="angle (deg)", y_label="inward (mm)", levels=levels), caption


def _overhang_plot(seed: int) -> tuple[str, str]:
    """The anode overhang per angle of a simulated cell end with a local negative overhang."""
    from model_core.metrology.ends import measure_ends
    from producers.simulator.cell_end import random_cell_end_spec, render_cell_end

    spec = random_cell_end_spec(np.random.default_rng(seed), negative=True)
    volume, truth = render_cell_end(spec)
    result = measure_ends(volume, spec.pixel_mm, spec.slice_mm, sectors=spec.sectors)
    sectors = result.measurements["overhang.sectors"].sectors or ()
    angles = [s.angle_deg for s in sectors]
    lines = [
        Line("measured", angles, [s.overhang for s in sectors]),
        Line("simulator's truth", [s.angle_deg for s in truth.sectors], [s.overhang_mm for s in truth.sectors]),
    ]
    lowest = result.measurements["overhang.min_mm"]
    caption = (
        f"A simulated cell end ({volume.shape[0]} slices of {volume.shape[1]} px, {spec.pixel_mm} mm): the anode "
        f"overhang per {360 // spec.sectors} deg sector, measured from angular reslices through the cell axis. "
        f"Smallest {lowest.value:.2f} mm at {lowest.angle_deg:.0f} deg: "
        + ("a negative overhang, found." if result.negative_overhang else "no negative overhang found.")
    )
    return line_svg(lines, x_label="angle (deg)", y_label="overhang (mm)", levels=[Level("0 mm", 0.0)]), caption
