"""``leadstream demo``: the embedded default, end to end on real parts, with a readable summary."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

from streams.local.sample import Traffic, sample_traffic
from streams.local.stack import LocalStack, wait_until
from streams.ops.produce import produce_lines
from streams.serde.avro import AvroSerde
from streams.serde.pipeline import utcnow
from streams.settings import Settings, load_settings

META_PIXEL = "100000000000001"
META_TOKEN = "meta-demo-token"  # noqa: S105 - the local Meta sandbox's token


def _jsonl(records: list[dict[str, Any]]) -> list[tuple[int, str]]:
    def default(value: Any) -> Any:
        return value.isoformat()

    return [(i, json.dumps(r, default=default)) for i, r in enumerate(records, start=1)]


def _produce(
    stack: LocalStack, serde: AvroSerde, topic: str, record: str, rows: list[dict[str, Any]]
) -> int:
    conn = _settings(stack).kafka_connection()
    report = produce_lines(_jsonl(rows), topic, record, serde, conn, sys.stderr)
    return report.produced


def _settings(stack: LocalStack) -> Settings:
    """Return the settings a worker of ``stack`` runs with (its ``LEADSTREAM_*`` environment)."""
    return load_settings(**{k[11:].lower(): v for k, v in stack.env().items()})


def _metric_totals(text: str) -> dict[str, dict[str, float]]:
    """Sum each counter by its first label: {family: {label value: total}}."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            label = next(iter(sample.labels.values()), "")
            bucket = out.setdefault(family.name, {})
            bucket[label] = bucket.get(label, 0.0) + sample.value
    return out


def run_demo(
    keep_logs: bool = False,
    timeout: float = 120.0,
    out: IO[str] = sys.stdout,
    stack: LocalStack | None = None,
    meta: bool = False,
) -> int:
    """Run the demo; return 0 when the sandbox received what the sample traffic should produce.

    With ``stack`` (the test session's), the demo uses it instead of starting its own. With
    ``meta``, a local Meta Conversions API sandbox is started too, the worker delivers to both
    destinations, and the summary shows what each received.
    """
    started = time.monotonic()
    own = stack is None
    if stack is None:
        stack = LocalStack()
        out.write(
            "Leadstream demo: starting a local broker, schema registry and Events API sandbox...\n"
        )
        stack.start()
    else:
        stack.sandbox_post("/_sandbox/reset")
    try:
        settings = _settings(stack)
        serde = AvroSerde.from_settings(settings)
        meta_box = _start_meta() if meta else None
        worker = stack.start_worker(**(_meta_env(meta_box) if meta_box else {}))
        out.write(
            f"  broker {stack.broker.describe()}, registry {stack.registry.url}, "
            f"sandbox {stack.sandbox.url}\n  worker starting (logs: {worker.log_path})...\n"
        )
        worker.wait_ready(timeout=90)
        traffic = sample_traffic(utcnow())
        s = settings
        n_early = _produce(
            stack, serde, s.topic_lead_status_changed, "LeadStatusChanged", traffic.statuses_early
        )
        time.sleep(1.0)  # let the early status change arrive before its form
        n_forms = _produce(stack, serde, s.topic_form_submitted, "FormSubmitted", traffic.forms)
        n_status = _produce(
            stack, serde, s.topic_lead_status_changed, "LeadStatusChanged", traffic.statuses
        )
        n_book = _produce(stack, serde, s.topic_booking_created, "BookingCreated", traffic.bookings)
        _produce_garbage(stack, s.topic_lead_status_changed)
        out.write(
            f"  played {n_forms} form submits, {n_early + n_status} status changes, "
            f"{n_book} bookings and 1 undecodable record\n"
        )
        expected = sum(traffic.expected_sent.values())
        expected_dead = sum(traffic.expected_dead.values())

        def done() -> bool:
            stats = stack.sandbox_get("/_sandbox/stats")
            dead = stack.consume_all(s.topic_dead_letter, idle=0.3, timeout=5)
            return stats["accepted"] >= expected and len(dead) >= expected_dead

        ok = True
        try:
            wait_until(done, timeout, "the sandbox to receive the sample conversions", worker)
        except Exception as exc:  # noqa: BLE001 - the summary shows what did arrive
            out.write(f"  WARNING: {exc.__class__.__name__}: {str(exc).splitlines()[0]}\n")
            ok = False
        time.sleep(1.5)  # a moment for anything unexpected (duplicates) to show up too
        ok = (
            _summary(stack, serde, worker.metrics(), traffic, out, time.monotonic() - started)
            and ok
        )
        if meta_box is not None:
            _meta_summary(meta_box, out)
        return 0 if ok else 1
    finally:
        if meta_box is not None:
            meta_box.stop()
        if own:
            stack.stop()
            if not keep_logs:
                shutil.rmtree(stack.workdir, ignore_errors=True)
        else:
            for worker in stack.workers:
                worker.stop()


def _produce_garbage(stack: LocalStack, topic: str) -> None:
    from confluent_kafka import Producer

    producer = Producer(_settings(stack).kafka_connection().librdkafka())
    # JSON from a producer that does not use the registry: not Confluent Avro at all.
    producer.produce(topic, key=b"lead-x", value=b'{"lead_id": "lead-x", "status": "qualified"}')
    producer.flush(10)


def _summary(
    stack: LocalStack,
    serde: AvroSerde,
    metrics_text: str,
    traffic: Traffic,
    out: IO[str],
    elapsed: float,
) -> bool:
    stats = stack.sandbox_get("/_sandbox/stats")
    events = stack.sandbox_get("/_sandbox/events")
    settings = _settings(stack)
    dead = [
        serde.decode(m.value(), "DeadLetter") for m in stack.consume_all(settings.topic_dead_letter)
    ]
    # Meta's refusals (its own topic) are listed in the Meta summary, not checked here.
    dead = [d for d in dead if not str(d["source_topic"]).endswith("-conversions-meta")]
    metrics = _metric_totals(metrics_text)
    core = metrics.get("leadstream_core_outcomes", {})

    w = out.write
    w("\n=== Leadstream demo summary ===\n\n")
    w(
        f"Sent to the Events API (sandbox ledger: {stats['accepted']} unique events accepted, "
        f"{stats['deduplicated']} duplicate copies merged, {stats['rejected_total']} rejected):\n"
    )
    w(f"  {'EVENT':<19} {'SOURCE':<6} {'EVENT_ID':<34} {'EMAIL (SHA-256)':<18} {'TTCLID / LEAD'}\n")
    for e in sorted(events, key=lambda e: (e["event"], e["event_id"])):
        user = e.get("user", {})
        email = user.get("email")
        email = (email[0] if isinstance(email, list) else email) or "-"
        click = user.get("ttclid") or (e.get("lead") or {}).get("lead_id") or "-"
        extra = ""
        props = e.get("properties") or {}
        if "value" in props:
            extra = f"  value {props['value']} {props.get('currency', '')}"
        w(
            f"  {e['event']:<19} {e['event_source']:<6} {e['event_id']:<34} {email[:12] + '…':<18} "
            f"{click}{extra}\n"
        )
    w("\nEvent names per route (stage maps, domain.md §4):\n")
    rules = settings.rules()
    for route, stage_map in (("web", rules.stage_map_web), ("crm", rules.stage_map_crm)):
        sent = Counter(e["event"] for e in events if e["event_source"] == route)
        names = ", ".join(f"{status} -> {event}" for status, event in stage_map.items())
        w(f"  {route:<4} stage map: {names}; booking -> {rules.booking_event}\n")
        w(f"  {route:<4} sent: {', '.join(f'{n} x{c}' for n, c in sorted(sent.items())) or '-'}\n")
    w("\nDeduplicated by Leadstream:\n")
    w(f"  redelivered inputs processed once   {int(core.get('duplicate_input', 0))}\n")
    w(
        f"  repeated conversions not resent      {int(core.get('duplicate_conversion', 0))}"
        "  (status flapped qualified -> contacted -> qualified)\n"
    )
    w("Withheld by consent:\n")
    w(f"  DENIED                               {int(core.get('withheld_consent_denied', 0))}\n")
    w(f"  UNKNOWN (policy granted-only)        {int(core.get('withheld_consent_unknown', 0))}\n")
    w(f"Ignored statuses (not in the stage map) {int(core.get('ignored_status', 0))}\n")
    w(f"Waited for their form, then enriched   {int(core.get('waiting_for_form', 0))}\n")
    reasons = Counter(str(d["reason"]) for d in dead)
    w(f"\nDead-lettered to {settings.topic_dead_letter} ({len(dead)}):\n")
    for d in dead:
        w(
            f"  {d['reason']:<18} {d['source_topic']}[{d['source_partition']}]"
            f"@{d['source_offset']}: {d['message'][:110]}\n"
        )

    by_event = Counter(e["event"] for e in events)
    ok = _matches(by_event, traffic.expected_sent) and _matches(reasons, traffic.expected_dead)
    ok = ok and stats["duplicates"] == 0
    w(
        f"\nFinished in {elapsed:.1f}s: "
        + (
            "every expected conversion arrived exactly once.\n"
            if ok
            else f"UNEXPECTED RESULT: sent {dict(by_event)}, expected {traffic.expected_sent}; "
            f"dead letters {dict(reasons)}, expected {traffic.expected_dead}.\n"
        )
    )
    return ok


def _matches(got: Mapping[str, int], expected: Mapping[str, int]) -> bool:
    return all(got.get(k, 0) == v for k, v in expected.items())


def _start_meta() -> Any:
    from streams.local.meta_sandbox.server import MetaSandbox, SandboxConfig

    box = MetaSandbox(
        SandboxConfig(access_tokens=frozenset({META_TOKEN}), pixel_ids=frozenset({META_PIXEL}))
    )
    box.start()
    return box


def _meta_env(box: Any) -> dict[str, str]:
    return {
        "LEADSTREAM_META_PIXEL_ID": META_PIXEL,
        "LEADSTREAM_META_ACCESS_TOKEN": META_TOKEN,
        "LEADSTREAM_META_API_URL": box.url,
    }


def _meta_summary(box: Any, out: IO[str]) -> None:
    stats = box.stats()
    events = box.events()
    w = out.write
    w(
        f"\nSent to the Meta Conversions API (sandbox {box.url}: {stats['accepted']} unique "
        f"events accepted, {stats['deduplicated']} merged, {stats['rejected_total']} rejected):\n"
    )
    w(f"  {'EVENT_NAME':<15} {'ACTION_SOURCE':<17} {'EVENT_ID':<34} {'FBC / LEAD_ID'}\n")
    for e in sorted(events, key=lambda e: (e["event_name"], e["event_id"])):
        user = e.get("user_data", {})
        click = user.get("fbc") or user.get("lead_id") or "-"
        w(f"  {e['event_name']:<15} {e['action_source']:<17} {e['event_id']:<34} {click}\n")
    sent = Counter(e["event_name"] for e in events)
    w(f"  sent: {', '.join(f'{n} x{c}' for n, c in sorted(sent.items())) or '-'}\n")
    warned = stats.get("crm_warnings", 0)
    w(
        "  Conversion Leads (Instant Form leads, by lead_id): every stage in order, the first "
        f"included; stage warnings: {warned}\n"
    )
