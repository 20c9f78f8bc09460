"""The inference consumer's Prometheus metrics (names are a contract with the Grafana dashboard)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runtime.metrics import DeliveryMetrics, ModelMetrics
from schemas.measurements import MEASUREMENT_NAMES, MeasurementName
from schemas.recipes import CheckResult
from schemas.verdicts import Verdict

STAGES = ("fetch", "decode", "measure", "model", "publish")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

NO_RECIPE = "none"
OTHER_RECIPES = "other"
# Recipe names come from scan events: past this many, new names share the label "other", so a
# misconfigured uploader cannot grow the series without bound (a plant runs a handful of designs).
MAX_RECIPES = 32
CONFORMS = ("true", "false", "unknown")
BOUNDS = ("min", "max")


def _steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    return tuple(round(start + index * step, 6) for index in range(round((stop - start) / step) + 1))


@dataclass(frozen=True)
class KeyMeasurement:
    """A measurement the dashboard charts per recipe: its histogram's name, unit and buckets.

    `step` is the fine bucket width, the histogram's resolution (the drift alert never takes a
    standard deviation below it)."""

    name: MeasurementName
    metric: str
    unit: Literal["mm", "ratio"]
    step: float
    buckets: tuple[float, ...]


# One histogram per measurement in absolute units rather than one of the deviation from the
# recipe's nominal: an engineer reads the values and limits as written in the recipe, a cell
# without a recipe or a check without a nominal is still charted, and the buckets can be fine
# where a 21700 cell's process lives and coarse around it (other designs still get a mean and
# rough quantiles).
KEY_MEASUREMENTS: tuple[KeyMeasurement, ...] = (
    KeyMeasurement(
        "can.outer_diameter_mm",
        "battery_ct_can_outer_diameter_mm",
        "mm",
        0.02,
        (18.0, 20.0, 20.5, 20.8, *_steps(20.9, 21.4, 0.02), 21.5, 22.0, 25.0, 50.0),
    ),
    KeyMeasurement(
        "can.wall_min_mm", "battery_ct_can_wall_min_mm", "mm", 0.01, (0.05, *_steps(0.1, 0.4, 0.01), 0.5, 1.0)
    ),
    KeyMeasurement(
        "can.eccentricity",
        "battery_ct_can_eccentricity_ratio",
        "ratio",
        0.005,
        (*_steps(0.005, 0.1, 0.005), 0.15, 0.2, 0.3, 0.5),
    ),
    KeyMeasurement(
        "can.max_dent_mm",
        "battery_ct_can_max_dent_mm",
        "mm",
        0.01,
        (0.01, 0.02, 0.03, 0.04, *_steps(0.05, 1.0, 0.05), 1.5, 2.0, 5.0),
    ),
    KeyMeasurement(
        "roll.layer_max_deviation_mm",
        "battery_ct_roll_layer_max_deviation_mm",
        "mm",
        0.01,
        (0.01, 0.02, 0.03, 0.04, *_steps(0.05, 1.0, 0.05), 1.5, 2.0, 5.0),
    ),
    KeyMeasurement(
        "overhang.min_mm",
        "battery_ct_overhang_min_mm",
        "mm",
        0.05,
        (-1.0, *_steps(-0.5, 1.0, 0.05), 1.25, 1.5, 2.0, 3.0, 5.0),
    ),
)


class InferenceMetrics(ModelMetrics, DeliveryMetrics):
    """The served model's and the delivery loop's shared metrics, plus the inference stages and the
    cells' measurements against their recipes (statistical process control)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ModelMetrics.__init__(self, registry)
        DeliveryMetrics.__init__(self, registry)
        self.scans = Counter("battery_ct_scans_total", "Scans judged", ["verdict"], registry=registry)
        self.batch_size = Histogram(
            "battery_ct_batch_size", "Scans per model micro-batch", buckets=_BATCH_BUCKETS, registry=registry
        )
        self.stage_seconds = Histogram(
            "battery_ct_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_to_verdict = Histogram(
            "battery_ct_event_to_verdict_seconds",
            "From the scan's event time to its verdict being published",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.measurements = {
            key.name: Histogram(
                key.metric,
                f"{key.name} of the cells measured in {key.unit}, per recipe (values in px are not observed)",
                ["recipe"],
                buckets=key.buckets,
                registry=registry,
            )
            for key in KEY_MEASUREMENTS
        }
        self.conformance = Counter(
            "battery_ct_conformance_total",
            "Verdicts by conformance to their recipe: true, false, or unknown (not checked)",
            ["recipe", "conforms"],
            registry=registry,
        )
        self.failed_checks = Counter(
            "battery_ct_failed_checks_total",
            "Tolerance checks failed, per recipe and measurement",
            ["recipe", "measurement"],
            registry=registry,
        )
        self.tolerance = Gauge(
            "battery_ct_tolerance",
            "A recipe's limit of a key measurement as its latest verdict checked it (mm; ratio for eccentricity)",
            ["recipe", "measurement", "bound"],
            registry=registry,
        )
        self._recipes: set[str] = set()
        # Pre-create the label values the dashboard expects, so they read 0 rather than "no data".
        for verdict in ("normal", "anomaly"):
            self.scans.labels(verdict=verdict)
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)
        self._recipe_label(None)

    def measured(self, verdict: Verdict) -> None:
        """Records a published verdict's cell against its recipe: one conformance outcome (unknown
        when it was not checked, e.g. not measured), every failed check, the key measurements
        whose unit is mm (or ratio) and the recipe's limits of them."""
        recipe = self._recipe_label(verdict.recipe)
        outcome = "unknown" if verdict.conforms is None else str(verdict.conforms).lower()
        self.conformance.labels(recipe=recipe, conforms=outcome).inc()
        if verdict.conformance is not None:
            for name in verdict.conformance.failed:
                self.failed_checks.labels(recipe=recipe, measurement=name).inc()
            for check in verdict.conformance.checks:
                if check.name in self.measurements:
                    self._limits(recipe, check)
        for key in KEY_MEASUREMENTS:
            measurement = (verdict.measurements or {}).get(key.name)
            # A value in px is not comparable across scans or with the recipe: not observed.
            if measurement is None or measurement.unit != key.unit or measurement.value is None:
                continue
            if math.isfinite(measurement.value):
                self.measurements[key.name].labels(recipe=recipe).observe(measurement.value)

    def _limits(self, recipe: str, check: CheckResult) -> None:
        for bound, limit in zip(BOUNDS, (check.min, check.max), strict=True):
            labels = {"recipe": recipe, "measurement": check.name, "bound": bound}
            if limit is not None:
                self.tolerance.labels(**labels).set(limit)
            else:
                # A new recipe version may drop a limit: its old line must not stay on the chart.
                with contextlib.suppress(KeyError):
                    self.tolerance.remove(*labels.values())

    def _recipe_label(self, recipe: str | None) -> str:
        """The label of `recipe`, its series created at first sight (a capped set of names)."""
        label = recipe or NO_RECIPE
        if label in self._recipes:
            return label
        if len(self._recipes) >= MAX_RECIPES:
            label = OTHER_RECIPES
            if label in self._recipes:
                return label
        self._recipes.add(label)
        for conforms in CONFORMS:
            self.conformance.labels(recipe=label, conforms=conforms)
        for name in MEASUREMENT_NAMES:
            self.failed_checks.labels(recipe=label, measurement=name)
        for histogram in self.measurements.values():
            histogram.labels(recipe=label)
        return label
