"""Issue 16 §2: the chart's dashboard and alert rules name only series a running worker exports."""

from __future__ import annotations

import copy
from pathlib import Path

import helm_python as helm
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.local.stack import LocalStack, wait_until
from tests import monitoring
from tests.conftest import Names
from tests.integration.helpers import form, produce, status, wait_events

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "leadstream"
# The series names each family type puts in the exposition (Prometheus text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


def exported(text: str) -> tuple[set[str], set[str]]:
    """Series names the scrape declares (every family, sampled or not) and those with samples."""
    declared: set[str] = set()
    sampled: set[str] = set()
    for family in text_string_to_metric_families(text):
        declared |= {family.name + suffix for suffix in SUFFIXES[family.type]}
        sampled |= {sample.name for sample in family.samples}
    return declared, sampled


def rule_series() -> set[str]:
    with helm.Chart.load(CHART_DIR) as chart:
        files = chart.render(
            copy.deepcopy({"metrics": {"prometheusRule": {"enabled": True}}}),
            name="ls",
            namespace="ls",
        )
    rule = next(
        doc
        for name, text in files.items()
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] == "PrometheusRule"
    )
    names: set[str] = set()
    for expr in monitoring.rule_exprs(rule):
        names |= monitoring.series_names(expr)
    return names


def test_dashboard_and_rules_use_only_exported_series(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), "LEADSTREAM_LAG_INTERVAL": "1"}
    p = names.prefix
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready()
        produce(stack, env, names.form, form(p, 1))
        produce(stack, env, names.status, status(p, 1, "c1", "Qualified"))
        wait_events(stack, p, 1, worker)
        text = wait_until(
            lambda: (lambda t: t if "leadstream_consumer_lag_seconds{" in t else None)(
                worker.metrics()
            ),
            30,
            "lag series",
            worker,
        )
    finally:
        worker.stop()
    declared, sampled = exported(text)
    dashboard = monitoring.load_dashboard()
    used: dict[str, set[str]] = {"dashboard": monitoring.variable_metrics(dashboard)}
    for expr in monitoring.dashboard_exprs(dashboard):
        used["dashboard"] |= monitoring.series_names(expr)
    used["rules"] = rule_series()
    for where, series in used.items():
        missing = series - declared - monitoring.PROMETHEUS_SERIES
        assert not missing, f"the {where} names series the worker does not export: {missing}"
    # After a form and its qualifying status change, the main panels have data, not just names.
    for name in (
        "leadstream_consumer_lag",
        "leadstream_consumer_lag_seconds",
        "leadstream_events_in_total",
        "leadstream_conversions_built_total",
        "leadstream_deliveries_total",
        "leadstream_api_requests_total",
        "leadstream_api_request_seconds_bucket",
        "leadstream_delivery_batch_size_bucket",
        "leadstream_destination_circuit_open",
        "leadstream_table_keys",
        "faust_total_rebalances",
    ):
        assert name in sampled, f"{name} has no sample after a delivered conversion"
        assert name in used["dashboard"], f"{name} is not on the dashboard"
