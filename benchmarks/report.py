"""Medians, ratios and targets: the printed table and ``bench-results/bench.json``.

Targets (issue 15) are printed next to the figures and again as one block, never asserted: a
figure that misses its target is marked ``MISSED`` but does not fail the run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One row of the table: how to name, format and judge a figure."""

    key: str
    number: str
    label: str
    unit: str
    fmt: str = "{:,.0f}"
    target: str = ""
    meets: Callable[[float], bool] | None = None


METRICS: tuple[Metric, ...] = (
    Metric("raw", "1", "raw loop: confluent-kafka consume + Avro decode", "rec/s"),
    Metric("noop", "2", "no-op Faust agent: take(1000, within=0.05) + count", "rec/s"),
    Metric("naive", "2", "naive Faust agent: lookup + await topic.send", "rec/s"),
    Metric("noop_cpu", "2", "no-op Faust agent: CPU per record", "us"),
    Metric("e2e", "3", "Leadstream e2e, first -> last accepted", "ev/s"),
    Metric("e2e_ready", "3", "Leadstream e2e, worker ready -> all accepted", "ev/s"),
    Metric("e2e_cpu", "3", "Leadstream e2e: the worker's CPU per lead", "us"),
    Metric(
        "records_per_lead",
        "3",
        "records consumed through Faust per lead (all agents)",
        "rec",
        fmt="{:.2f}",
        target="<= 2.5",
        meets=lambda v: v <= 2.5,
    ),
    Metric(
        "state_per_lead",
        "3",
        "lead state per lead, all tables (key + value bytes)",
        "B",
        target="<= 1,024",
        meets=lambda v: v <= 1024,
    ),
    Metric("latency_p50", "4", "latency p50, produced -> sandbox", "ms"),
    Metric("latency_p95", "4", "latency p95", "ms"),
    Metric("latency_p99", "4", "latency p99", "ms", target="<= 150", meets=lambda v: v <= 150),
    Metric("latency_cold_p99", "4", "latency p99 of the warm-up (cold start)", "ms"),
    Metric(
        "latency_requests_per_1000",
        "4",
        "HTTP requests per 1,000 events (latency run)",
        "",
        fmt="{:.1f}",
    ),
    Metric("state_json", "5", "lead state JSON per typical lead", "B"),
    Metric("state_memory", "5", "memory per lead, 1M leads in dict[bytes, bytes]", "B"),
    Metric(
        "requests_per_1000",
        "6",
        "HTTP requests per 1,000 events (saturation)",
        "",
        fmt="{:.2f}",
        target="<= 1.01",
        meets=lambda v: v <= 1.01,
    ),
    Metric("scale_1", "7", "one worker on 4 partitions", "ev/s"),
    Metric("scale_2", "7", "two workers on 4 partitions", "ev/s"),
    Metric("scale_ratio", "7", "two workers / one worker (per run)", "x", fmt="{:.2f}"),
    Metric("own", "8", "Leadstream's own CPU per lead, no Faust, no Kafka", "us"),
)
CEILING = "ceiling/noop"
"""The e2e ratio's ceiling: the no-op agent's CPU per record / Leadstream's own CPU per lead."""

RATIOS: tuple[tuple[str, str, str, Callable[[float], bool] | None], ...] = (
    ("raw", "3/1  e2e / raw loop", "", None),
    ("noop", "3/no-op  e2e / no-op agent", ">= 45 %", lambda r: r >= 0.45),
    ("naive", "3/naive  e2e / naive agent", "", None),
)


@dataclass(frozen=True)
class Target:
    """One row of issue 15's targets table: where its figure comes from and what it must meet."""

    label: str
    source: str  # "median:<metric>" or "ratio:<e2e key>/<base>"
    target: str
    fmt: Callable[[float], str]
    meets: Callable[[float], bool] | None


TARGETS: tuple[Target, ...] = (
    Target(
        "e2e leads/s / no-op Faust agent rec/s",
        "ratio:e2e/noop",
        ">= 45 %",
        lambda v: f"{v * 100:.1f} %",
        lambda v: v >= 0.45,
    ),
    Target(
        "records consumed through Faust per lead",
        "median:records_per_lead",
        "<= 2.5",
        lambda v: f"{v:.2f}",
        lambda v: v <= 2.5,
    ),
    Target(
        "latency status change -> Events API, p99",
        "median:latency_p99",
        "<= 150 ms",
        lambda v: f"{v:,.0f} ms",
        lambda v: v <= 150,
    ),
    Target(
        "HTTP requests per 1,000 events at saturation",
        "median:requests_per_1000",
        "<= 1.01",
        lambda v: f"{v:.2f}",
        lambda v: v <= 1.01,
    ),
    Target(
        "lead state per lead (all tables)",
        "median:state_per_lead",
        "<= 1,024 B",
        lambda v: f"{v:,.0f} B",
        lambda v: v <= 1024,
    ),
    Target(
        "two workers on 4 partitions / one worker",
        "median:scale_ratio",
        "measured",
        lambda v: f"{v:.2f}x",
        None,
    ),
)


def target_lines(summary: dict[str, Any], broker: str, latency_rate: float) -> list[str]:
    """Issue 15's targets, each with its figure and ``ok`` / ``MISSED`` / ``not measured``."""
    lines = [f"targets (issue 15), measured on {broker}:"]
    for t in TARGETS:
        kind, key = t.source.split(":", 1)
        value = (summary["medians"] if kind == "median" else summary["ratios"]).get(key)
        label = t.label
        if key == "latency_p99":
            label += f" at {latency_rate:,.0f}/s"
        if value is None:
            shown, verdict = "-", "not measured"
        else:
            shown = t.fmt(value)
            verdict = "reported" if t.meets is None else ("ok" if t.meets(value) else "MISSED")
        lines.append(f"  {label:<52} {shown:>10}   target {t.target:<10} {verdict}")
    return lines


def median(values: list[float]) -> float | None:
    """The median, or None for no runs."""
    return statistics.median(values) if values else None


def machine_facts() -> dict[str, Any]:
    """nproc, CPU model, memory, Python and the versions of what is measured."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(  # noqa: S603 - read-only
            ["git", "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "faust_streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "confluent_kafka": version("confluent-kafka"),
        "fastavro": version("fastavro"),
        "broker": None,  # set by the runner: the local broker it measured on
        "git_commit": commit or None,
    }


def summarise(runs: dict[str, list[float]]) -> dict[str, Any]:
    """Medians per metric and the ratios of e2e to each baseline."""
    medians = {key: median(values) for key, values in runs.items()}
    ratios: dict[str, float | None] = {}
    for e2e_key in ("e2e", "e2e_ready"):
        e2e = medians.get(e2e_key)
        for base, _label, _target, _meets in RATIOS:
            b = medians.get(base)
            ratios[f"{e2e_key}/{base}"] = e2e / b if e2e is not None and b else None
    noop_cpu, own = medians.get("noop_cpu"), medians.get("own")
    ratios[CEILING] = noop_cpu / own if noop_cpu is not None and own else None
    return {"medians": medians, "ratios": ratios}


def _verdict(value: float | None, meets: Callable[[float], bool] | None) -> str:
    if value is None or meets is None:
        return ""
    return "ok" if meets(value) else "MISSED"


def _ratio_text(ratio: float, base: str) -> str:
    return f"{ratio * 100:.1f} %" if base != "naive" else f"{ratio:.2f}x"


def table(
    runs: dict[str, list[float]], summary: dict[str, Any], title: str, notes: list[str]
) -> str:
    """The printed table: median, each run, target and verdict per row, ratios, then notes."""
    lines = [title, ""]
    header = f"{'#':<2} {'measurement':<50} {'median':>10} {'unit':<6} {'runs':<28} {'target':<10}"
    lines += [header, "-" * len(header)]
    for m in METRICS:
        values = runs.get(m.key)
        if not values:
            continue
        med = summary["medians"][m.key]
        shown_runs = " / ".join(m.fmt.format(v) for v in values) if len(values) > 1 else ""
        verdict = _verdict(med, m.meets)
        lines.append(
            f"{m.number:<2} {m.label:<50} {m.fmt.format(med):>10} {m.unit:<6} "
            f"{shown_runs:<28} {m.target:<10} {verdict}".rstrip()
        )
    ratio_lines = []
    for base, label, target, meets in RATIOS:
        ratio = summary["ratios"].get(f"e2e/{base}")
        if ratio is None:
            continue
        ready = summary["ratios"].get(f"e2e_ready/{base}")
        other = f"ready->all: {_ratio_text(ready, base)}" if ready is not None else ""
        ratio_lines.append(
            f"{'':<2} {label:<50} {_ratio_text(ratio, base):>10} {'':<6} {other:<28} "
            f"{target:<10} {_verdict(ratio, meets)}".rstrip()
        )
    if ratio_lines:
        lines += ["", "ratios of the e2e median (first -> last) to each baseline median:"]
        lines += ratio_lines
    ceiling = summary["ratios"].get(CEILING)
    if ceiling is not None:
        lines += [
            "",
            "the e2e / no-op ratio's ceiling if Faust and Kafka cost nothing (medians of 2 and 8):",
            f"{'8':<2} {'no-op CPU per record / own CPU per lead':<50} {ceiling * 100:>9.1f} %",
        ]
    if notes:
        lines += ["", "notes:"] + [f"  - {note}" for note in notes]
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write the report, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"generated_at": datetime.now(tz=UTC).isoformat(timespec="seconds"), **document}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
