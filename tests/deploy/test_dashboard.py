"""The Grafana dashboard and the alert rules name only metrics that the services' real registries
expose (docs/ARCHITECTURE.md's contract), and the dashboard covers what operators need."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.inference.metrics import KEY_MEASUREMENTS, InferenceMetrics
from consumers.retrain.metrics import RetrainMetrics
from facade.api.metrics import FacadeMetrics
from runtime.metrics import service_registry
from tests.deploy.deploy_files import (
    DEPLOY,
    REPO,
    expand,
    metric_names,
    panel_queries,
    row_panels,
    rule_exprs,
)

SPC_ROW = "Measurements (SPC)"


def exposed_names() -> set[str]:
    """Every sample name a battery-ct process exposes: the three services' metric classes on the
    registry each service builds (with the process and platform collectors)."""
    names: set[str] = set()
    for build in (InferenceMetrics, RetrainMetrics, FacadeMetrics):
        registry = service_registry()
        build(registry)
        for family in registry.collect():
            names.add(family.name)
            for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
                names.add(family.name + suffix)
            names.update(sample.name for sample in family.samples)
    return names


def architecture_metrics() -> set[str]:
    table = (REPO / "docs" / "ARCHITECTURE.md").read_text().split("## Metrics", 1)[1]
    return {line.split("`")[1] for line in table.splitlines() if line.startswith("| `battery_ct_")}


def test_every_metric_in_the_dashboard_exists(dashboard: dict[str, Any]) -> None:
    exposed = exposed_names()
    missing = {
        f"{query.panel}/{query.ref_id}: {name}"
        for query in panel_queries(dashboard)
        for name in metric_names(query.expr)
        if name not in exposed
    }
    assert not missing, f"dashboard queries name metrics no service exposes: {sorted(missing)}"


def test_every_metric_in_the_alert_rules_exists(alert_rules: dict[str, Any]) -> None:
    exposed = exposed_names()
    missing = {f"{alert}: {name}" for alert, expr in rule_exprs(alert_rules) for name in metric_names(expr)}
    missing = {entry for entry in missing if entry.split(": ")[1] not in exposed}
    assert not missing, f"alert rules name metrics no service exposes: {sorted(missing)}"


def test_the_dashboard_shows_every_metric_of_the_contract(dashboard: dict[str, Any]) -> None:
    used = {name for query in panel_queries(dashboard) for name in metric_names(query.expr)}
    used_bases = {name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for name in used}
    contract = architecture_metrics()
    assert len(contract) >= 18
    assert contract <= used_bases, f"contract metrics missing from the dashboard: {sorted(contract - used_bases)}"


@pytest.mark.parametrize(
    "title",
    [
        "Throughput",
        "Verdicts by outcome",
        "Anomaly rate",
        "Event to verdict latency",
        "Stage latency (p95)",
        "Consumer lag",
        "Dead letters by reason",
        "Model version serving",
        "Threshold",
        "Retrain outcomes",
        "Retrain duration",
        "Validation and anomaly error",
        "Process memory",
        "Process CPU",
        "Conformance outcomes",
        "Out-of-tolerance rate",
        "Out-of-tolerance rate by measurement",
        "Can outer diameter",
        "Can outer diameter distribution",
        "Minimum anode overhang",
        "Winding deviation (worst layer)",
    ],
)
def test_the_dashboard_has_the_panels_operators_asked_for(dashboard: dict[str, Any], title: str) -> None:
    panels = {query.panel for query in panel_queries(dashboard)}
    assert title in panels


def test_every_panel_uses_the_provisioned_data_source(dashboard: dict[str, Any]) -> None:
    datasource = (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in datasource
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_panel_query_parses(dashboard: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    """promtool parses the dashboard's PromQL (Grafana's variables expanded) as recording rules."""
    rules = [
        {"record": f"panel:{index}", "expr": expand(query.expr, "1m")}
        for index, query in enumerate(panel_queries(dashboard))
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("key", KEY_MEASUREMENTS, ids=lambda key: key.name)
def test_every_key_measurement_has_a_trend_with_its_tolerance_and_a_distribution(
    dashboard: dict[str, Any], key: Any
) -> None:
    panels = row_panels(dashboard, SPC_ROW)
    exprs = {panel["title"]: [target["expr"] for target in panel["targets"]] for panel in panels}
    trend = [title for title, queries in exprs.items() if any(f"{key.metric}_bucket" in q for q in queries)]
    heatmaps = [panel for panel in panels if panel["type"] == "heatmap" and panel["title"] in trend]
    assert len(heatmaps) == 1, f"{key.name}: one heatmap of its buckets"
    assert heatmaps[0]["targets"][0]["format"] == "heatmap"
    (lines,) = [title for title in trend if title != heatmaps[0]["title"]]
    queries = " ".join(exprs[lines])
    for bound in ("min", "max"):
        assert f'measurement="{key.name}",bound="{bound}"' in queries, f"{lines}: no {bound} tolerance line"
    assert "histogram_quantile(0.5," in queries
    if key.name != "overhang.min_mm":  # its _sum falls with negative values: no rate() of it
        assert f"rate({key.metric}_sum" in queries and f"rate({key.metric}_count" in queries
    assert "battery-ct recipes import" in next(p["description"] for p in panels if p["title"] == lines)


def test_every_spc_query_follows_the_recipe_variable(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["recipe"]["definition"] == "label_values(battery_ct_conformance_total, recipe)"
    assert variables["recipe"]["allValue"] == ".*" and variables["recipe"]["multi"]
    assert variables["window"]["current"]["value"] in variables["window"]["query"].split(",")
    panels = row_panels(dashboard, SPC_ROW)
    assert len(panels) == 3 + 2 * len(KEY_MEASUREMENTS)
    for panel in panels:
        for target in panel["targets"]:
            for selector in re.findall(r"battery_ct_[a-z_]+\{[^}]*\}", target["expr"]):
                assert 'recipe=~"$recipe"' in selector, f"{panel['title']}: {selector}"


def test_every_key_measurement_has_a_drift_rule_of_one_form(alert_rules: dict[str, Any]) -> None:
    """The drift rules differ only in the histogram and its resolution (promtool tests two of them)."""
    drift = [
        rule
        for group in alert_rules["groups"]
        for rule in group["rules"]
        if rule["alert"] == "BatteryCtMeasurementDrift"
    ]
    by_name = {rule["labels"]["measurement"]: rule for rule in drift}
    assert len(drift) == len(by_name) == len(KEY_MEASUREMENTS)
    forms = set()
    for key in KEY_MEASUREMENTS:
        rule = by_name[key.name]
        assert metric_names(rule["expr"]) == {f"{key.metric}_bucket", f"{key.metric}_count"}
        floor = re.search(r",\s*([0-9.]+)\s*\)\s*and", rule["expr"])
        assert floor is not None and float(floor.group(1)) == key.step
        form = (rule["expr"][: floor.start(1)] + "FLOOR" + rule["expr"][floor.end(1) :]).replace(key.metric, "METRIC")
        annotations = {
            k: v.replace(key.name, "NAME").replace(f" {key.unit}", " UNIT") for k, v in rule["annotations"].items()
        }
        forms.add((form, rule["for"], repr(sorted(annotations.items()))))
    assert len(forms) == 1, "the drift rules differ in more than their histogram"
