"""Small line plots for the demo report, as inline SVG (no plotting library): the can's dent
profile around the cell and the anode overhang per angle, with tolerance lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 12, 34
COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")


@dataclass(frozen=True)
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]  # None: no value there (the line breaks)


@dataclass(frozen=True)
class Level:
    """A horizontal line across the plot: a tolerance limit or zero."""

    label: str
    y: float


def _nice_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = 0.08 * (hi - lo)
    return lo - pad, hi + pad


def line_svg(lines: Sequence[Line], *, x_label: str, y_label: str, levels: Sequence[Level] = ()) -> str:
    """The lines on one pair of axes (x from its data, y spanning the data and the levels)."""
    xs = [x for line in lines for x in line.xs]
    ys = [y for line in lines for y in line.ys if y is not None] + [lv.y for lv in levels]
    if not xs or not ys:
        return '<p class="small">nothing to plot</p>'
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = _nice_range(ys)
    span_x, span_y = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + span_x * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return TOP + span_y * (1 - (y - y0) / (y1 - y0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(y_label)} over {escape(x_label)}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{span_x}" height="{span_y}" fill="none" stroke="#ccc"/>',
    ]
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<text x="{LEFT - 4}" y="{py(value) + 4:.1f}" font-size="10" text-anchor="end">{value:.3g}</text>'
        )
    for i in range(5):
        value = x0 + (x1 - x0) * i / 4
        parts.append(
            f'<text x="{px(value):.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
            f'text-anchor="middle">{value:.3g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + span_x / 2:.0f}" y="{HEIGHT - 4}" font-size="11" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{TOP + span_y / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + span_y / 2:.0f})">{escape(y_label)}</text>'
    )
    for level in levels:
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + span_x}" y1="{py(level.y):.1f}" y2="{py(level.y):.1f}" '
            'stroke="#888" stroke-dasharray="4 3"/>'
            f'<text x="{LEFT + span_x - 2}" y="{py(level.y) - 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="#555">{escape(level.label)}</text>'
        )
    for index, line in enumerate(lines):
        colour = COLOURS[index % len(COLOURS)]
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        for x, y in zip(line.xs, line.ys, strict=True):
            if y is None:
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{px(x):.1f},{py(y):.1f}")
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(points)}"/>'
                )
        parts.append(
            f'<text x="{LEFT + 6}" y="{TOP + 12 + 12 * index}" font-size="10" '
            f'fill="{colour}">{escape(line.label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
