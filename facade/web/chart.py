"""The statistics page's trend chart, drawn here as inline SVG: a few polylines over days, no
script and no chart library (the pages load nothing from outside the facade)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 14, 34


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # the colour lives in review.css, with the legend's
    values: Sequence[float | None]  # one per day; None: no value that day (the line breaks)


def _ticks(top: float) -> list[float]:
    step = max(1.0, top / 4)
    return [round(step * i, 2) for i in range(5)]


def trend_svg(days: Sequence[date], series: Sequence[Series], *, title: str, top: float | None = None) -> Markup:
    """Days left to right (oldest first), every series on one axis from 0 to `top` (else its maximum)."""
    plotted = [v for s in series for v in s.values if v is not None]
    top = top or max([1.0, *plotted])
    span_x = WIDTH - LEFT - RIGHT
    span_y = HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (span_x * i / (len(days) - 1) if len(days) > 1 else span_x / 2)

    def y(v: float) -> float:
        return TOP + span_y * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in _ticks(top):
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    label_every = max(1, len(days) // 8)
    for i, day in enumerate(days):
        if i % label_every == 0 or i == len(days) - 1:
            parts.append(f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="middle">{day:%m-%d}</text>')
    for s in series:
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(f"{x(i):.1f},{y(v):.1f}")
            parts.append(
                f'<circle class="{escape(s.css_class)}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3">'
                f"<title>{escape(s.name)} {days[i].isoformat()}: {v:g}</title></circle>"
            )
        for run in runs:
            if len(run) > 1:
                parts.append(f'<polyline class="{escape(s.css_class)}" points="{" ".join(run)}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # every value in it is a number or escaped above
