"""The report's inline SVG plots: valid SVG, a line broken where a value is missing, tolerance lines."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from examples.demo.plots import Level, Line, line_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_a_line_with_a_gap_is_two_polylines_and_levels_are_dashed_lines() -> None:
    svg = line_svg(
        [Line("overhang", [0, 10, 20, 30, 40], [0.5, 0.6, None, 0.4, 0.45])],
        x_label="angle (deg)",
        y_label="mm",
        levels=[Level("min 0.1", 0.1)],
    )
    root = ET.fromstring(svg)
    polylines = root.findall(f"{SVG}polyline")
    assert [len(p.attrib["points"].split()) for p in polylines] == [2, 2]
    (dashed,) = [line for line in root.findall(f"{SVG}line") if "stroke-dasharray" in line.attrib]
    assert float(dashed.attrib["y1"]) > max(
        float(pt.split(",")[1]) for p in polylines for pt in p.attrib["points"].split()
    )
    assert "min 0.1" in svg and "angle (deg)" in svg


def test_nothing_to_plot_says_so() -> None:
    assert "nothing to plot" in line_svg([Line("x", [], [])], x_label="a", y_label="b")
