"""The report renders from plain data: counts, versions, images as files next to the HTML, escaping."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from examples.demo.report import (
    RealProbeFigure,
    RealSection,
    Report,
    RetrainOutcome,
    ScanFigure,
    VersionRow,
    display_png,
    write_report,
)
from examples.demo.stream import LiveLine
from examples.demo.tally import StreamTally


def _tally(tp: int, fp: int, tn: int, fn: int) -> StreamTally:
    return StreamTally(true_positives=tp, false_positives=fp, true_negatives=tn, false_negatives=fn)


def _png(value: int) -> bytes:
    return display_png(np.full((8, 8), value, dtype=np.uint16))


def _report(**changes: object) -> Report:
    figure = ScanFigure(
        scan_id="scan-<1>",
        truth="pore (medium)",
        is_defect=True,
        flagged=True,
        anomaly_score=3.5,
        threshold=1.25,
        model_version="v0001-aaaaaaaa",
        slice_png=_png(1),
        heatmap_png=_png(2),
        mask_png=_png(3),
    )
    false_alarm = ScanFigure("scan-2", "normal", False, True, 2.0, 1.25, "v0001-aaaaaaaa", _png(4), None, None)
    versions = [
        VersionRow("v0001-aaaaaaaa", "promoted", False, 1.25, 0.01, None, None, "first", "2026-01-01 00:00:00"),
        VersionRow("v0002-bbbbbbbb", "promoted", True, 1.5, 0.009, None, "v0001-aaaaaaaa", None, "2026-01-01 00:01:00"),
    ]
    real = RealSection(
        threshold=2.0,
        threshold_rule="quantile",
        training_slices=36,
        training_seconds=12.0,
        probes=[
            RealProbeFigure("im_1", "nominal", 1.0, False, _png(5), _png(6)),
            RealProbeFigure("im_2", "buckled", 9.0, True, _png(7), _png(8)),
        ],
        attribution="MIT",
    )
    fields: dict[str, object] = {
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "options": {"scans": 200},
        "tally": _tally(50, 10, 130, 10),
        "per_type": {"pore": (9, 10), "fold": (1, 10)},
        "versions": versions,
        "initial_version": "v0001-aaaaaaaa",
        "retrain": RetrainOutcome(
            "promoted", "v0002-bbbbbbbb", "v0001-aaaaaaaa", "v0002-bbbbbbbb", 1.5, 0.009, None, 30
        ),
        "after": _tally(3, 1, 5, 1),
        "after_version": "v0002-bbbbbbbb",
        "figures": [figure, false_alarm],
        "real": real,
        "timings": {"training": 61.0},
        "notes": ["POST /predict answered"],
    }
    fields.update(changes)
    return Report(**fields)  # type: ignore[arg-type]


def test_report_holds_counts_versions_and_images(tmp_path: Path) -> None:
    index = write_report(_report(), tmp_path)
    text = index.read_text()
    assert "scored scans<b>200</b>" in text
    assert "precision<b>83.3 %</b>" in text
    assert "recall<b>83.3 %</b>" in text
    assert "50 TP" in text and "10 FP" in text and "130 TN" in text and "10 FN" in text
    assert "v0001-aaaaaaaa" in text and "v0002-bbbbbbbb" in text
    assert "promoted</b> version <b>v0002-bbbbbbbb" in text
    assert "9/10" in text and "90.0 %" in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    # defect card: slice, heat map, mask; false alarm: slice (no heat map stored); real: 2 x 2
    assert len(sources) == 3 + 1 + 4
    for source in sources:
        Image.open(io.BytesIO((tmp_path / source).read_bytes())).verify()
    assert "no image" in text  # the false alarm without a heat map says so


def test_report_escapes_values(tmp_path: Path) -> None:
    text = write_report(_report(), tmp_path).read_text()
    assert "scan-<1>" not in text
    assert "scan-&lt;1&gt;" in text


def test_rejected_retrain_is_shown_with_its_reason(tmp_path: Path) -> None:
    rejected = RetrainOutcome("rejected", "v0002-bbbbbbbb", "v0001-aaaaaaaa", "v0001-aaaaaaaa", 1.25, 0.02, "worse", 9)
    text = write_report(_report(retrain=rejected, after=None, real=None), tmp_path).read_text()
    assert '<b class="bad">rejected</b>' in text
    assert "Reason: worse" in text
    assert "Skipped in this run" in text


def test_rewriting_removes_old_images(tmp_path: Path) -> None:
    write_report(_report(), tmp_path)
    write_report(_report(figures=[], real=None), tmp_path)
    assert list((tmp_path / "images").glob("*.png")) == []


def test_display_png_tints_the_mask_red() -> None:
    image = np.zeros((4, 4), dtype=np.uint16)
    image[0, 0] = 1000
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[2, 2] = 255
    rgb = np.asarray(Image.open(io.BytesIO(display_png(image, mask))))
    assert rgb[2, 2, 0] > 100 and rgb[2, 2, 1] < 50
    assert rgb[1, 1, 0] == rgb[1, 1, 1]  # outside the mask: gray


def test_live_line_prints_periodic_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    live = LiveLine(20, "verdicts", out)
    tally = StreamTally()
    for i in range(20):
        tally.add(is_defect=i % 2 == 0, flagged=True)
        live.show(tally)
    live.show(tally, final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # every tenth of the stream, the last one not repeated by the final call
    assert lines[-1].startswith("verdicts 20/20") and "precision  50.0%" in lines[-1]


def test_the_measurement_section_shows_the_limits_what_failed_and_the_plots(tmp_path: Path) -> None:
    from examples.demo.measuring import MeasurementSection
    from examples.demo.plots import Line, line_svg
    from schemas.recipes import Recipe

    recipe = Recipe.model_validate(
        {"name": "demo-21700", "version": 1, "tolerances": {"can.max_dent_mm": {"nominal": 0.01, "max": 0.034}}}
    )
    plot = line_svg([Line("dent", [0, 90, 180], [0.0, 0.2, 0.0])], x_label="angle (deg)", y_label="mm")
    section = MeasurementSection(
        recipe, 200, 12, 3, {"can.max_dent_mm": 12}, {"can_dent": (9, 9), "normal": (1, 168)}, plot, "deepest",
        plot, "overhang per angle",
    )  # fmt: skip
    text = write_report(_report(measurements=section), tmp_path).read_text()
    assert "recipe <b>demo-21700</b> v1" in text and "<b class=ok>200</b> conform" in text
    assert "<b class=bad>12</b> out of tolerance, 3 not judged" in text
    assert (
        "<td>can.max_dent_mm</td><td class=n>0.01</td><td class=n>-</td><td class=n>0.034</td><td class=n>12</td>"
        in text
    )
    assert "<td>can_dent</td><td class=n>9 of 9</td>" in text
    assert text.count("<svg") == 2 and "overhang per angle" in text
    assert "Not measured in this run" in write_report(_report(), tmp_path / "none").read_text()
