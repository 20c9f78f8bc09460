"""The demo report: `index.html` and its images (PNG files next to it), from plain data.

Nothing here talks to Kafka or S3: the demo gathers a `Report` and `write_report` renders it, so
the rendering is tested on its own. Every value is HTML-escaped; images are files in `images/`.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from examples.demo.tally import StreamTally

if TYPE_CHECKING:
    from examples.demo.measuring import MeasurementSection


@dataclass(frozen=True)
class ScanFigure:
    """One judged scan: slice, heat map and (for a simulated defect) its mask, as PNG bytes."""

    scan_id: str
    truth: str  # "normal" or the defect type and severity
    is_defect: bool
    flagged: bool
    anomaly_score: float
    threshold: float
    model_version: str
    slice_png: bytes
    heatmap_png: bytes | None
    mask_png: bytes | None
    measured: str | None = None  # the recipe's verdict on the cell, in words


@dataclass(frozen=True)
class VersionRow:
    version: str
    status: str
    current: bool
    threshold: float
    validation_error: float | None
    anomaly_error: float | None
    parent: str | None
    label: str | None
    created_at: str


@dataclass(frozen=True)
class RealProbeFigure:
    name: str
    description: str
    anomaly_score: float
    is_anomaly: bool
    heatmap_png: bytes
    slice_png: bytes


@dataclass(frozen=True)
class RealSection:
    threshold: float
    threshold_rule: str
    training_slices: int
    training_seconds: float
    probes: list[RealProbeFigure]
    attribution: str


@dataclass(frozen=True)
class RetrainOutcome:
    """The ModelUpdate that answered the accepted scans."""

    status: str
    version: str
    parent: str | None
    current_version: str
    threshold: float
    validation_error: float | None
    reason: str | None
    seconds: float


@dataclass(frozen=True)
class StationSummary:
    """The review station as the demo left it: where, who may sign in, how many cells wait."""

    url: str
    users: tuple[str, ...]
    password: str
    waiting: int


@dataclass
class Report:
    started_at: datetime
    options: dict[str, object]
    tally: StreamTally
    per_type: dict[str, tuple[int, int]]  # defect type -> (flagged, total)
    versions: list[VersionRow]
    initial_version: str
    retrain: RetrainOutcome | None
    after: StreamTally | None  # scans judged after the retrain
    after_version: str | None
    figures: list[ScanFigure]
    real: RealSection | None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    station: StationSummary | None = None
    measurements: MeasurementSection | None = None


def display_png(image: np.ndarray, mask: np.ndarray | None = None) -> bytes:
    """A slice as 8-bit gray (robust window), with `mask` tinted red when given."""
    values = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(values, [0.5, 99.5])
    gray = np.clip((values - lo) / max(float(hi - lo), 1e-6), 0, 1)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if mask is not None:
        on = np.asarray(mask) > 0
        rgb[on] = 0.45 * rgb[on] + 0.55 * np.array([1.0, 0.1, 0.1])
    buffer = io.BytesIO()
    Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _e(value: object) -> str:
    return html.escape(str(value))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # file names come from scan ids


class _Images:
    def __init__(self, out: Path) -> None:
        self.dir = out / "images"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def img(self, data: bytes | None, name: str, alt: str) -> str:
        if data is None:
            return '<div class="none">no image</div>'
        self.count += 1
        file = f"{self.count:03d}-{_UNSAFE.sub('_', name)}.png"
        (self.dir / file).write_bytes(data)
        return f'<img src="images/{_e(file)}" alt="{_e(alt)}" loading="lazy">'


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.kpi { display: inline-block; margin: 0 1.4em 0.8em 0; } .kpi b { display: block; font-size: 1.8em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em; }
.card img, .card .none { width: 128px; height: 128px; image-rendering: pixelated; margin-right: 2px; }
.real img { width: 256px; height: 256px; } .none { display: inline-block; background: #eee; }
.tp { border-left: 6px solid #2a2; } .fp { border-left: 6px solid #e80; } .fn { border-left: 6px solid #d22; }
.small { font-size: 0.85em; color: #555; } .ok { color: #2a2; } .bad { color: #d22; }
"""


def _kpis(tally: StreamTally) -> str:
    items = [
        ("scored scans", str(tally.total)),
        ("precision", _pct(tally.precision)),
        ("recall", _pct(tally.recall)),
        ("accuracy", _pct(tally.accuracy)),
    ]
    return "".join(f'<span class="kpi">{_e(k)}<b>{_e(v)}</b></span>' for k, v in items)


def _confusion(tally: StreamTally) -> str:
    return (
        "<table><tr><th></th><th>flagged</th><th>passed</th></tr>"
        f'<tr><th>defective (truth)</th><td class="n">{tally.true_positives} TP</td>'
        f'<td class="n">{tally.false_negatives} FN</td></tr>'
        f'<tr><th>normal (truth)</th><td class="n">{tally.false_positives} FP</td>'
        f'<td class="n">{tally.true_negatives} TN</td></tr></table>'
    )


def _versions(rows: Sequence[VersionRow]) -> str:
    head = (
        "<tr><th>version</th><th>status</th><th>current</th><th>threshold</th><th>validation error</th>"
        "<th>anomaly error</th><th>parent</th><th>label</th><th>created (UTC)</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e(r.version)}</td><td>{_e(r.status)}</td><td>{'yes' if r.current else ''}</td>"
        f'<td class="n">{_num(r.threshold)}</td><td class="n">{_num(r.validation_error)}</td>'
        f'<td class="n">{_num(r.anomaly_error)}</td><td>{_e(r.parent or "-")}</td><td>{_e(r.label or "")}</td>'
        f"<td>{_e(r.created_at)}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _figure(figure: ScanFigure, images: _Images) -> str:
    kind = "tp" if figure.is_defect and figure.flagged else "fp" if figure.flagged else "fn"
    outcome = {"tp": "defect found", "fp": "false alarm", "fn": "defect missed"}[kind]
    pictures = images.img(figure.slice_png, f"{figure.scan_id}-slice", "slice") + images.img(
        figure.heatmap_png, f"{figure.scan_id}-heatmap", "heat map"
    )
    if figure.is_defect:
        pictures += images.img(figure.mask_png, f"{figure.scan_id}-mask", "defect (red)")
    return (
        f'<div class="card {kind}"><div>{pictures}</div>'
        f"<div><b>{_e(figure.scan_id)}</b>: {_e(outcome)}; truth {_e(figure.truth)}</div>"
        f'<div class="small">score {figure.anomaly_score:.3f} / threshold {figure.threshold:.3f}, '
        f"model {_e(figure.model_version)}</div>"
        + (f'<div class="small">{_e(figure.measured)}</div>' if figure.measured else "")
        + "</div>"
    )


def _retrain(report: Report) -> str:
    update = report.retrain
    if update is None:
        return "<p>No retrain step in this run.</p>"
    css = "ok" if update.status == "promoted" else "bad"
    parts = [
        f"<p>The retrain consumer answered the accepted scans after {update.seconds:.0f} s with "
        f'<b class="{css}">{_e(update.status)}</b> version <b>{_e(update.version)}</b> (parent '
        f"{_e(update.parent or '-')}); serving now: <b>{_e(update.current_version)}</b>, threshold "
        f"{_num(update.threshold)}, validation error {_num(update.validation_error)}.</p>"
    ]
    if update.reason:
        parts.append(f"<p>Reason: {_e(update.reason)}</p>")
    if report.after is not None:
        parts.append(
            f"<p>Scans judged after the update (model {_e(report.after_version)}):</p>"
            + _kpis(report.after)
            + _confusion(report.after)
        )
    return "".join(parts)


def _per_type(per_type: dict[str, tuple[int, int]]) -> str:
    rows = "".join(
        f'<tr><td>{_e(kind)}</td><td class="n">{found}/{total}</td><td class="n">{_pct(found / total)}</td></tr>'
        for kind, (found, total) in sorted(per_type.items())
        if total
    )
    return f"<table><tr><th>defect type</th><th>found</th><th>recall</th></tr>{rows}</table>"


def _real(section: RealSection | None, images: _Images) -> str:
    if section is None:
        return "<p>Skipped in this run (--no-real).</p>"
    cards = "".join(
        f'<div class="card real {"tp" if p.is_anomaly else ""}">'
        + images.img(p.slice_png, f"real-{p.name}-slice", p.name)
        + images.img(p.heatmap_png, f"real-{p.name}-heatmap", f"{p.name} heat map")
        + f"<div><b>{_e(p.name)}</b>: {_e(p.description)}</div>"
        f'<div class="small">score {p.anomaly_score:.3f} / threshold {section.threshold:.3f}: '
        f"{'<b class=bad>flagged</b>' if p.is_anomaly else '<b class=ok>normal</b>'}</div></div>"
        for p in section.probes
    )
    return (
        f"<p>A separate model trained on {section.training_slices} real slices ({section.training_seconds:.0f} s; "
        f"threshold {section.threshold:.3f}, rule {_e(section.threshold_rule)}) scores the nominal and the buckled "
        f"cell. Heat maps are scaled to each slice's own range, so a normal slice shows faint texture.</p>"
        f'<div class="grid">{cards}</div><p class="small">{_e(section.attribution)}</p>'
    )


def _measurements(section: MeasurementSection | None) -> str:
    if section is None:
        return "<p>Not measured in this run (the golden cells could not be measured at this size).</p>"
    recipe = section.recipe
    limits = "".join(
        f"<tr><td>{_e(name)}</td><td class=n>{_num(t.nominal)}</td><td class=n>{_num(t.min)}</td>"
        f"<td class=n>{_num(t.max)}</td><td class=n>{section.failed_checks.get(name, 0)}</td></tr>"
        for name, t in recipe.tolerances.items()
    )
    by_truth = "".join(
        f"<tr><td>{_e(truth)}</td><td class=n>{out} of {total}</td></tr>"
        for truth, (out, total) in sorted(section.out_by_truth.items())
    )
    dent = section.dent_svg or ""
    return (
        f"<p>Every cell was measured against recipe <b>{_e(recipe.name)}</b> v{recipe.version} "
        f"({_e(recipe.description)}): <b class=ok>{section.conforming}</b> conform, "
        f"<b class=bad>{section.failing}</b> out of tolerance, {section.unknown} not judged.</p>"
        "<table><tr><th>measurement</th><th>nominal</th><th>min</th><th>max</th><th>cells failing</th></tr>"
        f"{limits}</table>"
        "<h3>Out of tolerance, by what the cell really is</h3>"
        f"<table><tr><th>truth</th><th>out of tolerance</th></tr>{by_truth}</table>"
        f'<h3>Dent profile</h3><div class="plot">{dent}</div><p class="small">{_e(section.dent_caption)}</p>'
        f'<h3>Anode overhang per angle</h3><div class="plot">{section.overhang_svg}</div>'
        f'<p class="small">{_e(section.overhang_caption)}</p>'
    )


def _station(station: StationSummary | None) -> str:
    if station is None:
        return "<p>Not opened in this run.</p>"
    users = " or ".join(f"<code>{_e(u)}</code>" for u in station.users)
    return (
        f'<p><a href="{_e(station.url)}">{_e(station.url)}</a>: {station.waiting} cells wait for a decision '
        "(flagged, unusable, and a sample of passed cells for audit). Sign in as "
        f"{users} with the password <code>{_e(station.password)}</code>; an engineer may also roll a model back. "
        "A decision there is published to the accepted topic once and trains the next model. The station is "
        "open while the demo runs: <code>battery-ct demo</code> on a terminal keeps it open after the report "
        "until Ctrl-C (<code>--keep-open</code>).</p>"
    )


def render_html(report: Report, out: Path) -> str:
    images = _Images(out)
    options = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in report.options.items())
    timings = "".join(f'<tr><th>{_e(k)}</th><td class="n">{v:.0f} s</td></tr>' for k, v in report.timings.items())
    notes = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
    flagged = [f for f in report.figures if f.flagged]
    missed = [f for f in report.figures if not f.flagged]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>battery-ct demo report</title><style>{CSS}</style></head>
<body>
<h1>battery-ct demo report</h1>
<p class="small">Started {_e(report.started_at.strftime("%Y-%m-%d %H:%M:%S UTC"))}; initial model
{_e(report.initial_version)}. Simulated CT slices with known truth went through the real pipeline:
S3 upload, scan event on Kafka, inference consumer, verdicts topic.</p>
<h2>Review station</h2>
{_station(report.station)}
<h2>Stream summary</h2>
{_kpis(report.tally)}
{_confusion(report.tally)}
<h3>Recall per defect type</h3>
{_per_type(report.per_type)}
<h2>Measurements against the recipe</h2>
{_measurements(report.measurements)}
<h2>Retraining</h2>
{_retrain(report)}
<h2>Model versions (registry)</h2>
{_versions(report.versions)}
<h2>Flagged scans ({len(flagged)} shown)</h2>
<p class="small">Each card: the slice, the detector's heat map, and for a simulated defect its mask (red).
Green edge: defect found; orange: false alarm.</p>
<div class="grid">{"".join(_figure(f, images) for f in flagged)}</div>
<h2>Missed defects ({len(missed)} shown)</h2>
<div class="grid">{"".join(_figure(f, images) for f in missed)}</div>
<h2>Real slices</h2>
{_real(report.real, images)}
<h2>Run</h2>
<table>{options}</table>
<table>{timings}</table>
<ul>{notes}</ul>
</body></html>
"""


def write_report(report: Report, out: Path) -> Path:
    """Write `out/index.html` and `out/images/*.png`; returns the HTML file's path."""
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "images").glob("*.png") if (out / "images").is_dir() else ():
        old.unlink()
    index = out / "index.html"
    index.write_text(render_html(report, out), encoding="utf-8")
    return index
