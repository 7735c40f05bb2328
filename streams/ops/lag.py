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

from streams.connection import KafkaConnection
from streams.domain import reading
from streams.errors import BrokerError
from streams.runtime import offsets
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


class LagProbe:
    """Measures one group's lag; keeps its admin client and probe consumer between calls."""

    def __init__(
        self, conn: KafkaConnection, group: str, *, confirm_end_offsets: bool = False
    ) -> None:
        """Connect lazily through ``conn`` for ``group``.

        ``confirm_end_offsets`` confirms each listed log end with a fetch
        (:mod:`streams.runtime.offsets`), for brokers whose listed end can be short (Tansu).
        """
        self.group = group
        self._conn = conn
        self._confirm = confirm_end_offsets
        self._admin = AdminClient(conn.librdkafka())
        self._consumer = Consumer(
            conn.librdkafka(
                **{
                    "group.id": f"{group}-lag-probe",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                }
            )
        )

    def measure(
        self,
        topics: Sequence[str] | None = None,
        partitions: set[tuple[str, int]] | None = None,
        now: float | None = None,
    ) -> list[PartitionLag]:
        """Lag on every partition of ``topics`` (default: those the group committed for).

        ``partitions`` restricts it further (a worker measures only what it is assigned). The
        log end is the listed watermark, exact on Kafka; with ``confirm_end_offsets`` it is
        confirmed by a fetch (:mod:`streams.runtime.offsets`: Tansu lists too low an end when the
        last batch held several records).
        """
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in committed_offsets(self._admin, self.group)
        }
        wanted = set(topics) if topics else {t for t, _ in committed}
        metadata = self._admin.list_topics(timeout=10)
        now = time.time() if now is None else now
        listed: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in sorted(wanted):
            meta = metadata.topics.get(topic)
            if meta is None:
                continue
            for partition in sorted(meta.partitions):
                if partitions is not None and (topic, partition) not in partitions:
                    continue
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                listed[(topic, partition)] = (low, high)
        highs: dict[tuple[str, int], int | None] = {tp: high for tp, (_, high) in listed.items()}
        ends = offsets.fetched_end_offsets(self._conn, highs) if self._confirm else highs
        out: list[PartitionLag] = []
        for (topic, partition), (low, _) in listed.items():
            high = ends[(topic, partition)] or 0
            offset = committed.get((topic, partition))
            start = offset if offset is not None else low
            lag = max(0, high - start)
            age = _age(self._consumer, topic, partition, start, now) if lag else 0.0
            out.append(PartitionLag(self.group, topic, partition, offset, high, lag, age))
        return out

    def close(self) -> None:
        """Close the probe consumer."""
        self._consumer.close()


def slowest(rows: list[PartitionLag]) -> list[PartitionLag]:
    """Keep one row per partition, the one lagging most.

    With Meta configured the conversions are read twice, by Faust's ``fanout_meta`` (the app's
    group) and by the conversions reader (the deliver group): the partition's series shows the
    slower of the two.
    """
    kept: dict[tuple[str, int], PartitionLag] = {}
    for row in rows:
        tp = (row.topic, row.partition)
        if tp not in kept or row.lag > kept[tp].lag:
            kept[tp] = row
    return list(kept.values())


def measure_lag(
    conn: KafkaConnection,
    group: str,
    topics: Sequence[str] | None = None,
    now: float | None = None,
    *,
    confirm_end_offsets: bool = False,
) -> list[PartitionLag]:
    """Measure lag for ``group`` on every partition of the topics it consumes (or ``topics``)."""
    probe = LagProbe(conn, group, confirm_end_offsets=confirm_end_offsets)
    try:
        return probe.measure(topics, now=now)
    finally:
        probe.close()


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
    """Run ``leadstream lag``: 0 when fine, 1 when a partition lags more than ``max_lag``.

    Without ``group``: the app's group, then the delivery's own on the conversions
    (``<app id>-deliver``: TikTok's delivery reads them outside Faust).
    """
    conn, confirm = settings.kafka_connection(), settings.kafka_confirm_end_offsets
    rows = measure_lag(conn, group or settings.app_id, confirm_end_offsets=confirm)
    if group is None:
        rows += measure_lag(
            conn,
            reading.deliver_group(settings.app_id),
            [settings.topic_conversions],
            confirm_end_offsets=confirm,
        )
    if as_json:
        json.dump([asdict(r) for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(rows, sys.stdout)
    if max_lag is not None and any(r.lag > max_lag for r in rows):
        return 1  # a failed check; 2 would say the command was used or configured wrong
    return 0
