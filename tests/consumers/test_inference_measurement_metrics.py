"""InferenceMetrics.measured: a verdict's cell against its recipe, on a real registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from consumers.inference.metrics import KEY_MEASUREMENTS, MAX_RECIPES, InferenceMetrics
from schemas.measurements import MEASUREMENT_NAMES, Measurement, MeasurementName, Unit
from schemas.recipes import CheckResult, Conformance
from schemas.verdicts import Verdict

DIAMETER = "battery_ct_can_outer_diameter_mm"


def verdict(
    recipe: str | None,
    values: dict[MeasurementName, float],
    *,
    unit: Unit = "mm",
    failed: tuple[MeasurementName, ...] = (),
    limits: dict[MeasurementName, tuple[float | None, float | None]] | None = None,
    checked: bool = True,
) -> Verdict:
    """A judged scan with `values` measured (eccentricity in ratio, the rest in `unit`) and, when
    `checked`, a conformance naming `failed` with a check per value and its `limits`."""
    measurements = {
        name: Measurement(value=value, unit="ratio" if name == "can.eccentricity" and unit == "mm" else unit)
        for name, value in values.items()
    }
    limits = limits or {}
    checks = tuple(
        CheckResult(
            name=name,
            value=value,
            unit=measurements[name].unit,
            min=limits.get(name, (None, None))[0],
            max=limits.get(name, (None, None))[1],
            passed=name not in failed,
        )
        for name, value in values.items()
    )
    conformance = Conformance(recipe=recipe, recipe_version=1, conforms=not failed, failed=failed, checks=checks)
    return Verdict(
        scan_id="line1/cell-001",
        image_url="s3://scans/line1/cell-001.png",
        reconstruction_error=0.01,
        anomaly_score=0.2,
        is_anomaly=False,
        threshold=0.5,
        model_version="v1",
        recipe=recipe,
        pixel_mm=0.034 if unit == "mm" else None,
        measurements=measurements or None,
        conforms=not failed if checked else None,
        conformance=conformance if checked else None,
    )


@pytest.fixture
def metrics() -> InferenceMetrics:
    return InferenceMetrics(CollectorRegistry())


def sample(metrics: InferenceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_failed_check_counts_its_measurement_and_a_non_conforming_cell(metrics: InferenceMetrics) -> None:
    metrics.measured(
        verdict(
            "21700-nmc", {"can.outer_diameter_mm": 21.31, "can.wall_min_mm": 0.25}, failed=("can.outer_diameter_mm",)
        )
    )
    metrics.measured(verdict("21700-nmc", {"can.outer_diameter_mm": 21.10, "can.wall_min_mm": 0.24}))

    assert sample(metrics, "battery_ct_conformance_total", recipe="21700-nmc", conforms="false") == 1
    assert sample(metrics, "battery_ct_conformance_total", recipe="21700-nmc", conforms="true") == 1
    assert sample(metrics, "battery_ct_conformance_total", recipe="21700-nmc", conforms="unknown") == 0
    failed = "battery_ct_failed_checks_total"
    assert sample(metrics, failed, recipe="21700-nmc", measurement="can.outer_diameter_mm") == 1
    assert sample(metrics, failed, recipe="21700-nmc", measurement="can.wall_min_mm") == 0


def test_key_measurements_in_mm_land_in_their_buckets_per_recipe(metrics: InferenceMetrics) -> None:
    metrics.measured(verdict("21700-nmc", {"can.outer_diameter_mm": 21.11, "can.eccentricity": 0.03}))
    metrics.measured(verdict("21700-nmc", {"can.outer_diameter_mm": 21.13, "overhang.min_mm": -0.12}))
    metrics.measured(verdict("21700-lfp", {"can.outer_diameter_mm": 21.25}))

    nmc = {"recipe": "21700-nmc"}
    assert sample(metrics, f"{DIAMETER}_count", **nmc) == 2
    assert sample(metrics, f"{DIAMETER}_sum", **nmc) == pytest.approx(42.24)
    assert sample(metrics, f"{DIAMETER}_bucket", le="21.1", **nmc) == 0
    assert sample(metrics, f"{DIAMETER}_bucket", le="21.12", **nmc) == 1
    assert sample(metrics, f"{DIAMETER}_bucket", le="21.14", **nmc) == 2
    assert sample(metrics, f"{DIAMETER}_count", recipe="21700-lfp") == 1
    assert sample(metrics, "battery_ct_can_eccentricity_ratio_bucket", le="0.03", **nmc) == 1
    assert sample(metrics, "battery_ct_can_eccentricity_ratio_bucket", le="0.025", **nmc) == 0
    # A negative overhang (the cathode past the anode) is a value like any other.
    assert sample(metrics, "battery_ct_overhang_min_mm_bucket", le="-0.1", **nmc) == 1
    assert sample(metrics, "battery_ct_overhang_min_mm_bucket", le="-0.15", **nmc) == 0
    assert sample(metrics, "battery_ct_can_wall_min_mm_count", **nmc) == 0


def test_values_in_pixels_and_null_values_are_not_observed(metrics: InferenceMetrics) -> None:
    metrics.measured(verdict("21700-nmc", {"can.outer_diameter_mm": 620.0}, unit="px", checked=False))
    nulls = verdict("21700-nmc", {}, checked=False).model_copy(
        update={"measurements": {"can.outer_diameter_mm": Measurement.missing("mm", "can cut by the field of view")}}
    )
    metrics.measured(nulls)

    assert sample(metrics, f"{DIAMETER}_count", recipe="21700-nmc") == 0
    assert sample(metrics, "battery_ct_conformance_total", recipe="21700-nmc", conforms="unknown") == 2


def test_a_verdict_without_measurements_or_recipe_counts_one_unknown_outcome_only(
    metrics: InferenceMetrics,
) -> None:
    metrics.measured(verdict(None, {}, checked=False))

    assert sample(metrics, "battery_ct_conformance_total", recipe="none", conforms="unknown") == 1
    assert sample(metrics, "battery_ct_conformance_total", recipe="none", conforms="false") == 0
    for key in KEY_MEASUREMENTS:
        assert sample(metrics, f"{key.metric}_count", recipe="none") == 0
    failed = [s for s in metrics.failed_checks.collect()[0].samples if s.name.endswith("_total") and s.value]
    assert not failed


def test_the_recipes_limits_follow_its_latest_checks(metrics: InferenceMetrics) -> None:
    name: MeasurementName = "can.outer_diameter_mm"
    metrics.measured(verdict("21700-nmc", {name: 21.1}, limits={name: (20.95, 21.25)}))
    limit = "battery_ct_tolerance"
    assert sample(metrics, limit, recipe="21700-nmc", measurement=name, bound="min") == 20.95
    assert sample(metrics, limit, recipe="21700-nmc", measurement=name, bound="max") == 21.25

    # The recipe's next version keeps only a maximum: the old minimum's line goes.
    metrics.measured(verdict("21700-nmc", {name: 21.1}, limits={name: (None, 21.2)}))
    assert sample(metrics, limit, recipe="21700-nmc", measurement=name, bound="min") is None
    assert sample(metrics, limit, recipe="21700-nmc", measurement=name, bound="max") == 21.2


def test_a_new_recipe_shows_zeros_for_every_series_the_dashboard_reads(metrics: InferenceMetrics) -> None:
    assert sample(metrics, "battery_ct_conformance_total", recipe="21700-nmc", conforms="true") is None
    metrics.measured(verdict("21700-nmc", {}, checked=False))

    for conforms in ("true", "false"):
        assert sample(metrics, "battery_ct_conformance_total", recipe="21700-nmc", conforms=conforms) == 0
    for name in MEASUREMENT_NAMES:
        assert sample(metrics, "battery_ct_failed_checks_total", recipe="21700-nmc", measurement=name) == 0
    for key in KEY_MEASUREMENTS:
        assert sample(metrics, f"{key.metric}_count", recipe="21700-nmc") == 0


def test_recipe_names_past_the_cap_share_one_label(metrics: InferenceMetrics) -> None:
    for index in range(MAX_RECIPES + 5):
        metrics.measured(verdict(f"design-{index}", {}, checked=False))

    recipes = {s.labels["recipe"] for s in metrics.conformance.collect()[0].samples}
    assert "design-0" in recipes and f"design-{MAX_RECIPES - 2}" in recipes
    assert f"design-{MAX_RECIPES}" not in recipes
    assert len(recipes) == MAX_RECIPES + 1
    assert sample(metrics, "battery_ct_conformance_total", recipe="other", conforms="unknown") == 6
