"""Measurements 3, 4 and 6: Leadstream end to end against the real broker and the sandbox.

* :func:`run_saturation` -- a real ``python -m streams worker`` on a pre-loaded backlog of N form
  submits + N qualified status changes (unique leads): decode -> join -> dedup -> map -> batched
  POST to the sandbox. Throughput is status changes per second, from the first to the last
  accepted event at the sandbox (its ``received_at``), and from worker ready to all accepted;
  HTTP requests per 1,000 events come from the sandbox's counters of the same run.
* :func:`run_latency` -- status change produced -> request received by the sandbox, for status
  changes of pre-existing forms produced at a fixed rate, after a warm-up at that rate (timed
  on its own as the cold start).

The sandbox runs in this process (a thread of :class:`streams.local.stack.LocalStack`); it is read
in-process (``stack.sandbox.stats()`` / ``.events()``, the same data as ``GET /_sandbox/...``)
so that polling costs no HTTP round trips while the worker runs.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks import data, footprint
from benchmarks.common import (
    BenchError,
    CpuMeter,
    Names,
    new_names,
    percentile,
    poll,
    progress,
    tail,
    wait_idle,
)
from streams.local.stack import LocalStack, WorkerProcess
from streams.ops.produce import producer_config

OnReady = Callable[[WorkerProcess], Callable[[], None]]
"""Called with the worker once it is ready; returns what to call when the run's events are in."""


@dataclass
class SaturationResult:
    """One saturation run of the worker."""

    leads: int
    linger: float
    produce_s: float
    spawn_to_ready_s: float
    first_to_last_s: float
    first_request_events: int
    events_per_s_first_to_last: float
    ready_to_all_s: float
    events_per_s_ready_to_all: float
    requests: int
    accepted: int
    deduplicated: int
    requests_per_1000: float
    max_events_per_request: int
    input_records_per_s_ready_to_all: float
    first_accepted_after_ready_s: float
    conversions_done_after_ready_s: float | None
    lead_stage_events_per_s: float | None
    cpu_pct: dict[str, float | None] = field(default_factory=dict)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    consumed: dict[str, Any] = field(default_factory=dict)  # footprint.consumed_records
    state: dict[str, Any] = field(default_factory=dict)  # footprint.table_bytes

    def to_json(self) -> dict[str, Any]:
        """JSON-ready details."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class LatencyResult:
    """One latency run at a fixed produce rate."""

    rate: float
    achieved_rate: float
    events: int
    linger: float
    producer_linger_ms: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    p50_first_tenth_ms: float
    p50_last_tenth_ms: float
    growth_ms_per_s: float
    delivered_rate: float  # events / (last received - first produced): includes the tail
    requests_per_1000: float = 0.0  # the Events API requests of the run, per 1,000 events
    cold_start_ms: dict[str, float] = field(default_factory=dict)  # the warm-up's latencies
    to_conversion_ms: dict[str, float] = field(default_factory=dict)
    conversion_to_sandbox_ms: dict[str, float] = field(default_factory=dict)

    @property
    def falling_behind(self) -> bool:
        """True when latency grew through the run (> 0.1 s per s): a queue was building up."""
        return self.growth_ms_per_s > 100.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready details."""
        out = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}
        out["falling_behind"] = self.falling_behind
        return out


def read_conversions(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 60.0
) -> list[tuple[float, bytes]]:
    """(producer timestamp in epoch s, value) of the first ``expected`` records of ``topic``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-ts-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    records.append((message.timestamp()[1] / 1000, message.value() or b""))
    finally:
        consumer.close()
    return records


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0 when it cannot be computed)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def _spread(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (empty when there are none)."""
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 50), 1),
        "p95": round(percentile(values, 95), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def start_ready_worker(
    stack: LocalStack, names: Names, timeout: float = 90.0, **overrides: str
) -> tuple[WorkerProcess, float, float]:
    """Start a worker on ``names``; return it with its spawn->ready seconds and ready epoch."""
    spawned = time.perf_counter()
    worker = stack.start_worker(names.prefix, **names.env(), **overrides)

    def ready() -> bool | None:
        try:
            resp = requests.get(f"{worker.url}/health/ready", timeout=1)
        except requests.RequestException:
            return None
        return True if resp.status_code == 200 else None

    poll(ready, timeout, "the worker to be ready", alive=lambda: _alive(worker))
    return worker, time.perf_counter() - spawned, time.time()


def _alive(worker: WorkerProcess) -> None:
    proc = worker.proc
    if proc is not None and proc.poll() is not None:
        msg = f"worker exited with {proc.returncode}:\n{tail(worker.log_text())}"
        raise BenchError(msg)


def wait_accepted(
    stack: LocalStack,
    worker: WorkerProcess,
    expected: int,
    *,
    first_within: float,
    stall: float,
    what: str,
) -> dict[str, Any]:
    """Wait for ``expected`` events at the sandbox.

    Fails when no event arrived within ``first_within`` seconds, or when the count then stops
    moving for ``stall`` seconds (the worker lost or stuck on something: a real failure).
    """
    last_count, last_move = 0, time.monotonic()
    window = first_within
    while True:
        _alive(worker)
        stats = stack.sandbox.stats()
        if stats["accepted"] >= expected:
            return stats
        if stats["accepted"] != last_count:
            last_count, last_move, window = stats["accepted"], time.monotonic(), stall
        elif time.monotonic() - last_move > window:
            msg = (
                f"{what}: the sandbox accepted {stats['accepted']} of {expected} events and "
                f"nothing moved for {window:.0f}s (rejected: {stats['rejected']})\n"
                f"--- worker log tail ---\n{tail(worker.log_text())}"
            )
            raise BenchError(msg)
        time.sleep(0.1)


def _check_exact(stack: LocalStack, expected: int, what: str) -> dict[str, Any]:
    """After a short quiet period, require exactly ``expected`` events and no rejection."""
    time.sleep(0.5)
    stats = stack.sandbox.stats()
    if stats["accepted"] != expected or stats["rejected_total"]:
        msg = (
            f"{what}: sandbox accepted {stats['accepted']} events (expected {expected}), "
            f"rejected {stats['rejected']}"
        )
        raise BenchError(msg)
    return stats


def run_saturation(
    stack: LocalStack,
    encoder: data.Encoder,
    leads: int,
    *,
    linger: float,
    label: str = "e2e",
    on_ready: OnReady | None = None,
    env: dict[str, str] | None = None,
) -> SaturationResult:
    """Pre-load ``leads`` forms + qualified status changes, then time a worker through them.

    ``env`` holds more ``LEADSTREAM_*`` variables for the worker.
    """
    names = new_names(label)
    bootstrap = stack.broker.bootstrap
    data.create_topics(bootstrap, [names.form, names.status], stack.partitions)
    forms, statuses = data.backlog(encoder, names, leads, data.now_utc())
    produce_s = data.produce_backlog(bootstrap, [(names.form, forms), (names.status, statuses)])
    del forms, statuses
    progress(
        f"  backlog of {leads:,} forms + {leads:,} status changes produced in {produce_s:.1f}s"
    )
    stack.sandbox_post("/_sandbox/reset")
    worker, spawn_to_ready, ready_at = start_ready_worker(
        stack, names, timeout=90.0, **{"LEADSTREAM_DELIVERY_LINGER": str(linger), **(env or {})}
    )
    progress(f"  worker ready after {spawn_to_ready:.1f}s; processing")
    cpu = CpuMeter(
        {
            "worker": worker.proc.pid if worker.proc else None,
            "broker": stack.broker.pid,
            "harness+sandbox": None,
        }
    )
    cpu.start()
    stop_profile = on_ready(worker) if on_ready else None
    try:
        stats = wait_accepted(
            stack,
            worker,
            leads,
            first_within=120 + leads / 100,  # generous: before bf0f32b it started 6-11 s late
            stall=60.0,
            what="saturation run",
        )
        cpu_pct = cpu.stop()
        if stop_profile is not None:
            stop_profile()
            stop_profile = None
        stats = _check_exact(stack, leads, "saturation run")
        events = stack.sandbox.events(event="ApplicationApproval")
        consumed = footprint.consumed_records(bootstrap, names, leads)  # while it commits
    finally:
        if stop_profile is not None:
            stop_profile()
        worker.stop()
    state = footprint.table_bytes(bootstrap, names, leads, stack.partitions)
    received = [_epoch(e["received_at"]) for e in events]
    first, last = min(received), max(received)
    per_request = Counter(e["request_id"] for e in events)
    first_request = next(e["request_id"] for e in events if _epoch(e["received_at"]) == first)
    first_count = per_request[first_request]
    sizes = Counter(per_request.values())
    produced = read_conversions(bootstrap, names.conversions, stack.partitions, leads)
    conversions_done = max(t for t, _ in produced) - ready_at if len(produced) >= leads else None
    result = SaturationResult(
        leads=leads,
        linger=linger,
        produce_s=produce_s,
        spawn_to_ready_s=spawn_to_ready,
        first_to_last_s=last - first,
        first_request_events=first_count,
        events_per_s_first_to_last=(leads - first_count) / (last - first) if last > first else 0,
        ready_to_all_s=last - ready_at,
        events_per_s_ready_to_all=leads / (last - ready_at),
        requests=stats["requests"],
        accepted=stats["accepted"],
        deduplicated=stats["deduplicated"],
        requests_per_1000=stats["requests"] / stats["accepted"] * 1000,
        max_events_per_request=stats["max_events_per_request"],
        input_records_per_s_ready_to_all=2 * leads / (last - ready_at),
        first_accepted_after_ready_s=first - ready_at,
        conversions_done_after_ready_s=conversions_done,
        lead_stage_events_per_s=leads / conversions_done if conversions_done else None,
        cpu_pct={k: None if v is None else round(v, 1) for k, v in cpu_pct.items()},
        batch_sizes={str(k): v for k, v in sorted(sizes.items())},
        consumed=consumed,
        state=state,
    )
    progress(
        f"  {leads:,} events: {result.events_per_s_first_to_last:,.0f}/s first->last, "
        f"{result.events_per_s_ready_to_all:,.0f}/s ready->all, "
        f"{result.requests} requests ({result.requests_per_1000:.2f} per 1,000 events); CPU % "
        + ", ".join(f"{k} {v:.0f}" for k, v in result.cpu_pct.items() if v is not None)
    )
    progress(
        f"  records consumed through Faust: {consumed['per_lead']:.2f} per lead ("
        + ", ".join(f"{a} {n}" for a, n in consumed["per_agent_per_lead"].items())
        + "; read outside Faust by the conversions reader: "
        + (", ".join(f"{t} {n}" for t, n in consumed.get("outside_per_lead", {}).items()) or "-")
        + f"); table state {state['bytes_per_lead']:,.0f} B per lead ("
        + ", ".join(f"{t} {n:,.0f}" for t, n in state["per_table_bytes_per_lead"].items())
        + ")"
    )
    if conversions_done is not None:
        progress(
            f"  stages: all {leads:,} conversions produced {conversions_done:.1f}s after ready "
            f"({leads / conversions_done:,.0f}/s); first accepted at the sandbox "
            f"{first - ready_at:.1f}s after ready, last {last - ready_at:.1f}s"
        )
    return result


_EVENTS_IN = re.compile(r'^leadstream_events_in_total\{topic="([^"]+)"\}\s+([0-9.e+]+)$', re.M)


def events_in(worker: WorkerProcess, topic: str) -> float:
    """The worker's ``leadstream_events_in_total`` for ``topic`` (0 when not yet exported)."""
    try:
        text = worker.metrics()
    except requests.RequestException:
        return 0.0
    return sum(float(v) for t, v in _EVENTS_IN.findall(text) if t == topic)


_WARMUP_REST = 1.0  # seconds between the warm-up's last delivery and the measured run


def _paced(
    producer: Producer,
    topic: str,
    records: list[data.KeyValue],
    rate: float,
    prefix: str,
    first: int,
    sent_at: dict[str, float],
) -> float:
    """Produce ``records`` at ``rate``/s (lead numbers from ``first``); return the seconds taken.

    Each record's produce time goes to ``sent_at``, by the event id of its conversion.
    """
    started = time.perf_counter()
    for n, (key, value) in enumerate(records):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, key=key, value=value)
        sent_at[data.conversion_event_id(prefix, first + n)] = time.time()
        producer.poll(0)
    produced_s = time.perf_counter() - started
    if producer.flush(30):
        msg = "latency run: status changes not acknowledged by the broker"
        raise BenchError(msg)
    return produced_s


def warm_producer(bootstrap: str, names: Names, linger_ms: int) -> Producer:
    """An idempotent producer that has its producer id and the status topic's metadata.

    A new idempotent producer holds its first records until the broker grants it a producer id
    (on a fresh broker, "coordinator load in progress" retries take seconds): without this, the
    first second of status changes reached the broker together and the latency run measured the
    harness's producer start (a p99 of 0.6-2.7 s at 50/s, falling linearly over the first
    second), not Leadstream. A CRM's producer is long-lived.
    """
    producer = Producer({**producer_config(bootstrap), "linger.ms": linger_ms})
    warmup = f"{names.prefix}.warmup"
    data.create_topics(bootstrap, [warmup], 1)
    producer.produce(warmup, key=b"warmup", value=b"")
    if producer.flush(30):
        msg = "latency run: the warm-up record was not acknowledged by the broker"
        raise BenchError(msg)
    producer.list_topics(names.status, timeout=10)
    return producer


def run_latency(
    stack: LocalStack,
    encoder: data.Encoder,
    *,
    rate: float,
    seconds: float,
    linger: float,
    warmup: float = 1.0,
    producer_linger_ms: int = 5,
    label: str = "lat",
    env: dict[str, str] | None = None,
) -> LatencyResult:
    """Produce status changes of pre-existing forms at ``rate``/s; time each to the sandbox.

    First ``warmup`` seconds of status changes of other leads, at the same rate, all delivered
    before the measured ones start: the worker's first deliveries after its start (and the
    run's new topics' first writes) are timed on their own, as ``cold_start``, and the
    percentiles are the steady state's. ``env`` holds more ``LEADSTREAM_*`` variables for the
    worker (the latency levers).
    """
    names = new_names(label)
    bootstrap = stack.broker.bootstrap
    count = int(rate * seconds)
    warm = int(rate * warmup)
    leads = count + warm  # the measured leads first, then the warm-up's
    data.create_topics(bootstrap, [names.form, names.status], stack.partitions)
    now = data.now_utc()
    forms = encoder.forms(names.form, names.prefix, range(leads), now)
    data.produce_backlog(bootstrap, [(names.form, forms)])
    statuses = encoder.statuses(names.status, names.prefix, range(leads), now)
    stack.sandbox_post("/_sandbox/reset")
    worker, _, _ = start_ready_worker(
        stack, names, timeout=90.0, **{"LEADSTREAM_DELIVERY_LINGER": str(linger), **(env or {})}
    )
    waited = 0.0
    try:
        poll(
            lambda: True if events_in(worker, names.form) >= leads else None,
            120,
            f"the worker to store {leads} forms",
            interval=0.25,
            alive=lambda: _alive(worker),
        )
        if worker.proc is not None:  # let the form-side work (identity index, changelogs) finish
            waited = wait_idle(worker.proc.pid, "the worker")
        progress(f"  {leads:,} forms stored, worker idle {waited:.1f}s later")
        producer = warm_producer(bootstrap, names, producer_linger_ms)
        sent_at: dict[str, float] = {}
        if warm:
            progress(f"  warm-up: {warm:,} status changes at {rate:,.0f}/s")
            _paced(producer, names.status, statuses[count:], rate, names.prefix, count, sent_at)
            wait_accepted(stack, worker, warm, first_within=60, stall=60, what="warm-up")
            time.sleep(_WARMUP_REST)
        progress(f"  producing {count:,} status changes at {rate:,.0f}/s")
        produced_s = _paced(
            producer, names.status, statuses[:count], rate, names.prefix, 0, sent_at
        )
        wait_accepted(stack, worker, leads, first_within=60, stall=60, what="latency run")
        stats = _check_exact(stack, leads, "latency run")
        events = stack.sandbox.events(event="ApplicationApproval")
    finally:
        worker.stop()
    received = {e["event_id"]: _epoch(e["received_at"]) for e in events}
    order = [data.conversion_event_id(names.prefix, n) for n in range(count)]
    cold = [data.conversion_event_id(names.prefix, n) for n in range(count, leads)]
    latencies = [(received[i] - sent_at[i]) * 1000 for i in order]  # in produce order
    tenth = max(1, count // 10)
    converted = {
        encoder.serde.decode(value, "Conversion")["event_id"]: at
        for at, value in read_conversions(bootstrap, names.conversions, stack.partitions, leads)
    }
    hop1 = [(converted[i] - sent_at[i]) * 1000 for i in order if i in converted]
    hop2 = [(received[i] - converted[i]) * 1000 for i in order if i in converted]
    result = LatencyResult(
        rate=rate,
        achieved_rate=count / produced_s,
        events=len(latencies),
        linger=linger,
        producer_linger_ms=producer_linger_ms,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies),
        mean_ms=sum(latencies) / len(latencies),
        p50_first_tenth_ms=percentile(latencies[:tenth], 50),
        p50_last_tenth_ms=percentile(latencies[-tenth:], 50),
        growth_ms_per_s=_slope([sent_at[i] for i in order], latencies),
        delivered_rate=count / (max(received[i] for i in order) - min(sent_at[i] for i in order)),
        requests_per_1000=stats["requests"] / leads * 1000,
        cold_start_ms=_spread([(received[i] - sent_at[i]) * 1000 for i in cold]),
        to_conversion_ms=_spread(hop1),
        conversion_to_sandbox_ms=_spread(hop2),
    )
    progress(
        f"  latency at {result.achieved_rate:,.0f}/s: p50 {result.p50_ms:.0f} ms, "
        f"p95 {result.p95_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, max {result.max_ms:.0f} ms; "
        f"{result.requests_per_1000:.1f} requests per 1,000 events"
    )
    if cold:
        progress(
            f"  cold start (the warm-up's {warm:,} status changes): "
            f"p50 {result.cold_start_ms['p50']:.0f} ms, p99 {result.cold_start_ms['p99']:.0f} ms"
        )
    if hop1:
        progress(
            "  split: produced -> conversion produced p50 "
            f"{result.to_conversion_ms['p50']:.0f} / p99 {result.to_conversion_ms['p99']:.0f} ms; "
            "conversion -> sandbox p50 "
            f"{result.conversion_to_sandbox_ms['p50']:.0f} / "
            f"p99 {result.conversion_to_sandbox_ms['p99']:.0f} ms"
        )
    if result.falling_behind:
        progress(
            f"  the worker fell behind: latency grew {result.growth_ms_per_s:.0f} ms per second "
            f"(p50 {result.p50_first_tenth_ms:.0f} ms in the first tenth of the run, "
            f"{result.p50_last_tenth_ms:.0f} ms in the last)"
        )
    return result
