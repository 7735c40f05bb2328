"""Helpers for integration tests: JSON Lines records and waiting on the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.connection import KafkaConnection
from streams.domain import reading
from streams.local.stack import LocalStack, WorkerProcess, wait_until
from streams.ops.lag import measure_lag

NOW = datetime.now(tz=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def form(prefix: str, n: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"{prefix}-evt-{n}",
        "lead_id": f"{prefix}-lead-{n}",
        "occurred_at": iso(NOW - timedelta(hours=1)),
        "page_url": "https://shop.example.com/quote",
        "ttclid": f"E.C.P.{prefix}click{n}",
        "ttp": f"ttp-{n}",
        "email": f"Lead{n}.{prefix}@Example.com ",
        "phone": "07700 900123",
        "country": "GB",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "ad_consent": "GRANTED",
    }
    record.update(overrides)
    return record


def status(prefix: str, n: int, change: str, stage: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "change_id": f"{prefix}-{change}",
        "lead_id": f"{prefix}-lead-{n}",
        "status": stage,
        "changed_at": iso(NOW - timedelta(minutes=5)),
        "crm": "hubspot",
    }
    record.update(overrides)
    return record


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def produce(stack: LocalStack, env: dict[str, str], topic: str, *records: dict[str, Any]) -> None:
    result = stack.run_cli("produce", topic, "-", stdin=jsonl(*records), **env)
    assert result.returncode == 0, result.stderr


def sandbox_events(stack: LocalStack, prefix: str) -> list[dict[str, Any]]:
    return [e for e in stack.sandbox_get("/_sandbox/events") if e["event_id"].startswith(prefix)]


def wait_paused(worker: WorkerProcess, timeout: float = 60) -> None:
    """Wait until the worker's TikTok destination is paused (its circuit open)."""
    wait_until(
        lambda: 'leadstream_destination_circuit_open{destination="tiktok"} 1.0' in worker.metrics(),
        timeout,
        "the destination to pause (circuit open)",
        worker,
    )


def wait_events(
    stack: LocalStack, prefix: str, count: int, worker: WorkerProcess, timeout: float = 60
) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (lambda ev: ev if len(ev) >= count else None)(sandbox_events(stack, prefix)),
        timeout,
        f"{count} events with prefix {prefix} at the sandbox",
        worker,
    )


def caught_up(stack: LocalStack, group: str, topics: list[str]) -> bool:
    """True when ``group`` has committed every record of ``topics`` (each partition with data).

    A worker commits an offset only after everything that record caused is durable (its
    outputs, receipts and dead letters; a delivery only once the API answered), so this is
    positive evidence that nothing more is on its way, unlike an idle wait that saw nothing.

    The conversions are read outside Faust, by the conversions reader, whose progress is the
    ``<group>-deliver`` group's: a topic counts as caught up when every one of the two groups
    that committed on it has committed all of it (with Meta, Faust's ``fanout_meta`` reads the
    conversions too), and a topic with records needs at least one of them.
    """
    conn = KafkaConnection(stack.broker.bootstrap)
    # Tansu (the fallback broker) lists short log ends: confirm them with a fetch there.
    confirm = stack.broker.kind == "tansu"
    rows = [
        *measure_lag(conn, group, topics, confirm_end_offsets=confirm),
        *measure_lag(conn, reading.deliver_group(group), topics, confirm_end_offsets=confirm),
    ]
    if not rows:
        return False
    for topic in topics:
        on_topic = [r for r in rows if r.topic == topic]
        readers = {r.group for r in on_topic if r.committed is not None}
        if not readers and any(r.log_end > 0 for r in on_topic):
            return False
        for r in on_topic:
            if r.group in readers and (r.lag != 0 or (r.committed is None and r.log_end > 0)):
                return False
    return True


def wait_caught_up(
    stack: LocalStack, group: str, topics: list[str], worker: WorkerProcess, timeout: float = 60
) -> None:
    """Wait until ``group`` has committed every record of ``topics`` (see :func:`caught_up`)."""
    wait_until(
        lambda: caught_up(stack, group, topics),
        timeout,
        f"group {group} to commit every record of {', '.join(topics)}",
        worker,
    )


def records_on(stack: LocalStack, topic: str) -> int:
    """How many records ``topic`` holds, from its watermarks (0 when it does not exist).

    Use it for "nothing was written": unlike an idle read it cannot miss a record that is slow
    to fetch. (On Tansu a multi-record batch counts as fewer records, never as 0.)
    """
    consumer = Consumer({"bootstrap.servers": stack.broker.bootstrap, "group.id": "records-on"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        total = 0
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += max(0, high - low)
        return total
    finally:
        consumer.close()


def metric_value(metrics: str, name: str, **labels: str) -> float:
    """Sum the samples of ``name`` in a /metrics text whose labels include ``labels``."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        sample, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            total += float(value)
    return total
