"""The deploy files and what the tests read from them: the PromQL of the dashboard (its variables
expanded) and the alert rules, the published ports of the compose services."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "battery-ct.json"
PROMETHEUS_DIR = DEPLOY / "prometheus"
KAFKA_START = DEPLOY / "kafka" / "start.sh"
MINIO_INIT = DEPLOY / "minio" / "init.sh"
METRIC_NAME = re.compile(r"\b(battery_ct_[a-z0-9_]+|process_[a-z0-9_]+|python_[a-z0-9_]+)\b")


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every PromQL target of every panel (rows included), in dashboard order."""
    queries = []
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            queries.append(PanelQuery(panel["title"], target["refId"], target["expr"]))
    return queries


def row_panels(dashboard: dict[str, Any], row: str) -> list[dict[str, Any]]:
    """The panels under the row titled `row`: nested in it when it is collapsed, else the ones
    after it up to the next row."""
    found: list[dict[str, Any]] = []
    current = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            current = panel["title"]
            if current == row:
                found.extend(panel.get("panels", []))
        elif current == row:
            found.append(panel)
    return found


def expand(expr: str, window: str) -> str:
    """A panel's PromQL as Grafana sends it: its time windows ($__rate_interval, the dashboard's
    $window) set to `window`, the $recipe variable at its All value."""
    return expr.replace("$__rate_interval", window).replace("$window", window).replace("$recipe", ".*")


def rule_exprs(rules: dict[str, Any]) -> list[tuple[str, str]]:
    """(alert, expr) of every alerting rule; an alert may have several rules (one per measurement)."""
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def published_host_ips(service: dict[str, Any]) -> list[str]:
    """The host address of each published port of a resolved compose service ("0.0.0.0" when none is given).

    `docker compose config` writes ports as mappings (host_ip, published, target); Debian's
    docker-compose 1.29 writes `host_ip:published:target/tcp` strings when an address is given.
    """
    ips = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ips.append(port.get("host_ip") or "0.0.0.0")
        else:
            parts = str(port).split(":")
            ips.append(parts[0] if len(parts) == 3 else "0.0.0.0")
    return ips
