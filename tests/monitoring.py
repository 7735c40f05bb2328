"""The chart's Grafana dashboard and alert rules as PromQL: expressions and the series they name.

Shared by the chart's unit tests (the expressions parse) and the integration test (every series
named is one a running worker exports).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "helm" / "leadstream" / "dashboards" / "leadstream.json"
# Grafana's range variables are not PromQL; any duration stands in for them.
GRAFANA_RANGES = ("$__rate_interval", "$__interval", "$__range")
# Series Prometheus adds itself, not the worker.
PROMETHEUS_SERIES = {"up"}


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target, Grafana's range variables replaced by a duration."""
    exprs = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable in GRAFANA_RANGES:
                expr = expr.replace(variable, "5m")
            exprs.append(expr)
    return exprs


def variable_metrics(dashboard: dict[str, Any]) -> set[str]:
    """Metrics the template variables query with ``label_values(metric, label)``."""
    found = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"])
        assert match, f"variable {variable['name']}: unexpected query {variable['query']}"
        found.add(match.group(1))
    return found


def rule_exprs(rule: dict[str, Any]) -> list[str]:
    """The expressions of every alert of a rendered PrometheusRule."""
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def series_names(expr: str) -> set[str]:
    """Names of the series ``expr`` selects (parsed with Prometheus' grammar)."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            found.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found
