"""Consumer lag per group, topic and partition: committed offset vs log end, and record age.

Used by ``leadstream lag`` and by the worker's lag metrics.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import IO

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.errors import BrokerError
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one partition for one group."""

    group: str
    topic: str
    partition: int
    committed: int | None
    log_end: int
    lag: int
    lag_seconds: float | None


def committed_offsets(
    admin: AdminClient, group: str, timeout: float = 10.0
) -> list[TopicPartition]:
    """Return the group's committed offsets, every partition it has committed for."""
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    try:
        result = futures[group].result(timeout=timeout)
    except KafkaException as exc:
        msg = f"cannot read committed offsets of group {group!r}: {exc}"
        raise BrokerError(msg) from exc
    return [tp for tp in result.topic_partitions if tp.offset >= 0]


def measure_lag(
    bootstrap: str, group: str, topics: Sequence[str] | None = None, now: float | None = None
) -> list[PartitionLag]:
    """Measure lag for ``group`` on every partition of the topics it consumes (or ``topics``)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    committed = {(tp.topic, tp.partition): tp.offset for tp in committed_offsets(admin, group)}
    wanted = set(topics) if topics else {t for t, _ in committed}
    metadata = admin.list_topics(timeout=10)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group}-lag-probe",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    now = time.time() if now is None else now
    out: list[PartitionLag] = []
    try:
        for topic in sorted(wanted):
            meta = metadata.topics.get(topic)
            if meta is None:
                continue
            for partition in sorted(meta.partitions):
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                offset = committed.get((topic, partition))
                start = offset if offset is not None else _low
                lag = max(0, high - start)
                age = _age(consumer, topic, partition, start, now) if lag else 0.0
                out.append(PartitionLag(group, topic, partition, offset, high, lag, age))
    finally:
        consumer.close()
    return out


def _age(consumer: Consumer, topic: str, partition: int, offset: int, now: float) -> float | None:
    """Seconds since the record at ``offset`` was produced (None if it cannot be read)."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    msg = consumer.poll(5.0)
    consumer.unassign()
    if msg is None or msg.error():
        return None
    _kind, ts = msg.timestamp()
    return max(0.0, now - ts / 1000.0) if ts > 0 else None


def print_table(rows: Sequence[PartitionLag], out: IO[str]) -> None:
    """Print lag rows as an aligned table."""
    header = ("GROUP", "TOPIC", "PART", "COMMITTED", "LOG-END", "LAG", "LAG-SECONDS")
    table = [header] + [
        (
            r.group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.log_end),
            str(r.lag),
            "-" if r.lag_seconds is None else f"{r.lag_seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def run_lag(settings: Settings, group: str | None, as_json: bool, max_lag: int | None) -> int:
    """Run ``leadstream lag``: 0 when fine, 2 when a partition lags more than ``max_lag``."""
    rows = measure_lag(settings.kafka_bootstrap, group or settings.app_id)
    if as_json:
        json.dump([asdict(r) for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(rows, sys.stdout)
    if max_lag is not None and any(r.lag > max_lag for r in rows):
        return 2
    return 0
