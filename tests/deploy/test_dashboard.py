"""The Grafana dashboard and the alert rules name only metrics that the services' real registries
expose (docs/ARCHITECTURE.md's contract), and the dashboard covers what operators need."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.inference.metrics import InferenceMetrics
from consumers.retrain.metrics import RetrainMetrics
from facade.api.metrics import FacadeMetrics
from runtime.metrics import service_registry
from tests.deploy.deploy_files import DEPLOY, REPO, metric_names, panel_queries, rule_exprs


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
    missing = {f"{alert}: {name}" for alert, expr in rule_exprs(alert_rules).items() for name in metric_names(expr)}
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
    """promtool parses the dashboard's PromQL (Grafana's $__rate_interval replaced) as recording rules."""
    rules = [
        {"record": f"panel:{index}", "expr": query.expr.replace("$__rate_interval", "1m")}
        for index, query in enumerate(panel_queries(dashboard))
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
