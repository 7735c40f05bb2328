"""What one saturation run cost per lead: records consumed through Faust, and table state.

Both are read from the broker after the run, so they count what the worker really did and
need nothing from its metrics:

* :func:`consumed_records` -- the consumer group's committed offsets on every topic it consumed
  (the input topics and the internal hops), per topic and per agent. Every input of the run is
  processed (the run checks that every event was delivered), so the committed offset of a
  partition is the number of its records Faust consumed. The conversions are read outside Faust,
  by the conversions reader (``<app id>-deliver`` group): counted apart, as ``outside``.
* :func:`table_bytes` -- the latest value of every key on each table's changelog
  (``<app id>-<table>-changelog``), tombstones dropped: key + value bytes, which is what the
  memory store holds (its per-entry overhead is measurement 5's).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.common import Names

TABLES = ("leads", "identity", "delivered", "dead_lettered")


def agent_of(names: Names, topic: str) -> str:
    """The agent that consumes ``topic`` in a worker started on ``names``."""
    app = names.app_id
    by_topic = {
        names.form: "leads",
        names.status: "leads",
        f"{app}-bookings-by-lead": "leads",
        f"{app}-ticks": "leads",
        names.booking: "route_bookings",
        f"{app}-identity": "identity",
        f"{app}-bookings-by-identity": "identity",
        names.conversions: "fanout_meta",
    }
    return by_topic.get(topic, "other")


def _committed(admin: AdminClient, group: str) -> dict[str, int]:
    request = [ConsumerGroupTopicPartitions(group)]
    result = admin.list_consumer_group_offsets(request)[group].result(timeout=15)
    per_topic: dict[str, int] = defaultdict(int)
    for tp in result.topic_partitions or []:
        if tp.offset >= 0:
            per_topic[tp.topic] += tp.offset
    return dict(per_topic)


def _ends(bootstrap: str, topics: list[str]) -> dict[str, int]:
    group = f"bench-ends-{time.time_ns()}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        meta = consumer.list_topics(timeout=10).topics
        ends: dict[str, int] = {}
        for topic in topics:
            parts = meta[topic].partitions if topic in meta else {}
            ends[topic] = sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts
            )
        return ends
    finally:
        consumer.close()


def consumed_records(
    bootstrap: str, names: Names, leads: int, settle: float = 10.0
) -> dict[str, Any]:
    """Records the worker's group consumed (committed offsets), per topic, per agent and per lead.

    Waits up to ``settle`` seconds for the committed offsets to reach the end of each topic the
    group consumes (Faust commits once a second); what is committed then is what is counted.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + settle
    while True:
        committed = _committed(admin, names.app_id)
        outside = _committed(admin, f"{names.app_id}-deliver")
        ends = _ends(bootstrap, sorted(set(committed) | set(outside)))
        caught_up = all(committed[t] >= ends.get(t, 0) for t in committed) and all(
            outside[t] >= ends.get(t, 0) for t in outside
        )
        if caught_up or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    per_agent: dict[str, int] = defaultdict(int)
    for topic, count in committed.items():
        per_agent[agent_of(names, topic)] += count
    total = sum(committed.values())
    return {
        "total": total,
        "per_lead": total / leads,
        "caught_up": caught_up,
        "per_topic": dict(sorted(committed.items())),
        "per_agent": dict(sorted(per_agent.items())),
        "per_agent_per_lead": {a: round(n / leads, 3) for a, n in sorted(per_agent.items())},
        "outside_per_lead": {t: round(n / leads, 3) for t, n in sorted(outside.items())},
    }


def table_bytes(bootstrap: str, names: Names, leads: int, partitions: int) -> dict[str, Any]:
    """Key + value bytes of the latest value of each key of every table, per lead."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-state-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    per_table: dict[str, dict[str, int]] = {}
    try:
        for table in TABLES:
            topic = f"{names.app_id}-{table}-changelog"
            parts = [TopicPartition(topic, p) for p in range(partitions)]
            ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
            latest: dict[bytes, int] = {}
            if sum(ends.values()):
                consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
                read = dict.fromkeys(ends, 0)
                deadline = time.monotonic() + 60
                while any(read[p] < ends[p] for p in ends) and time.monotonic() < deadline:
                    for msg in consumer.consume(1000, 0.5):
                        if msg.error() is not None:
                            continue
                        read[msg.partition() or 0] = (msg.offset() or 0) + 1
                        key = msg.key() or b""
                        value = msg.value()
                        if value is None:
                            latest.pop(key, None)
                        else:
                            latest[key] = len(key) + len(value)
                consumer.unassign()
            per_table[table] = {"keys": len(latest), "bytes": sum(latest.values())}
    finally:
        consumer.close()
    total = sum(t["bytes"] for t in per_table.values())
    return {
        "bytes_per_lead": total / leads,
        "total_bytes": total,
        "per_table": per_table,
        "per_table_bytes_per_lead": {t: round(v["bytes"] / leads, 1) for t, v in per_table.items()},
    }
