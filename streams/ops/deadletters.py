"""``leadstream dead-letters``: list, summarise and re-drive the dead-letter topic.

Re-driving produces a dead letter's ``original`` bytes back to its source topic with its key.
For input records that is the record with its PII already hashed (hashes pass through
unchanged), so a fixed record flows again; the worker's dedup (inputs seen, conversions sent,
events delivered) keeps a record that is re-driven twice from producing anything twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from streams.connection import KafkaConnection
from streams.errors import ConfigError, LeadstreamError, SerdeError
from streams.ops.produce import producer_config
from streams.ops.progress import Progress
from streams.serde.avro import AvroSerde
from streams.serde.pipeline import REDRIVE_HEADER
from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """One dead letter with where it sits in the dead-letter topic."""

    partition: int
    offset: int
    record: dict[str, Any]

    @property
    def source(self) -> str:
        """``topic:partition:offset`` of the record that was dead-lettered.

        An unreadable dead letter has no source; it is named by where it sits instead.
        """
        r = self.record
        if "source_topic" not in r:
            return f"(unreadable at partition {self.partition} offset {self.offset})"
        return f"{r['source_topic']}:{r['source_partition']}:{r['source_offset']}"


def read_dead_letters(
    conn: KafkaConnection,
    topic: str,
    serde: AvroSerde,
    idle: float = 1.5,
    timeout: float = 120.0,
    progress: Progress | None = None,
) -> list[DeadLetterRow]:
    """Read the whole dead-letter topic, from the earliest offset each partition retains.

    Not from offset 0: once retention (or ``DeleteRecords``) has removed a partition's head,
    offset 0 is out of range and the consumer's reset policy would jump to the end, listing
    nothing. ``OFFSET_BEGINNING`` is the partition's low watermark, and ``auto.offset.reset``
    goes there too if retention moves it while the topic is read.

    Raises:
        ConfigError: the topic does not exist (``LEADSTREAM_TOPIC_DEAD_LETTER``).
        LeadstreamError: Kafka failed while the topic was read.

    """
    consumer = Consumer(
        conn.librdkafka(
            **{
                "group.id": f"leadstream-dead-letters-{time.time_ns()}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            text = (
                f"LEADSTREAM_TOPIC_DEAD_LETTER: topic {topic!r} does not exist "
                "(a worker creates it at start)"
            )
            raise ConfigError(text)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        rows: list[DeadLetterRow] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise LeadstreamError(str(err))
            quiet_since = time.monotonic()
            try:
                record = serde.decode(msg.value(), "DeadLetter")
            except SerdeError as exc:
                record = {"reason": "unreadable_dead_letter", "message": str(exc)}
            rows.append(DeadLetterRow(msg.partition() or 0, msg.offset() or 0, record))
            if progress is not None:
                progress.add()
        return sorted(rows, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def select(
    rows: Iterable[DeadLetterRow],
    reasons: Sequence[str] = (),
    source_topics: Sequence[str] = (),
    sources: Sequence[str] = (),
) -> list[DeadLetterRow]:
    """Filter by reason, source topic, or exact ``topic:partition:offset`` sources."""
    out = []
    for row in rows:
        if "source_topic" not in row.record:
            continue
        if reasons and row.record["reason"] not in reasons:
            continue
        if source_topics and row.record["source_topic"] not in source_topics:
            continue
        if sources and row.source not in sources:
            continue
        out.append(row)
    return out


def summarise(rows: Sequence[DeadLetterRow], out: IO[str]) -> None:
    """Print counts by reason and source topic, then one line per dead letter."""
    by_reason = Counter(str(r.record.get("reason")) for r in rows)
    out.write(f"{len(rows)} dead letters\n")
    for reason, count in by_reason.most_common():
        topics = Counter(
            str(r.record.get("source_topic")) for r in rows if r.record.get("reason") == reason
        )
        where = ", ".join(f"{t} {n}" for t, n in topics.most_common())
        out.write(f"  {reason:<20} {count:>6}  ({where})\n")
    if rows:
        header = ("SOURCE".ljust(42), "REASON".ljust(20), "WHEN".ljust(20), "MESSAGE")
        out.write("\n" + " ".join(header) + "\n")
    for r in rows:
        when = r.record.get("dead_lettered_at")
        stamp = when.strftime("%Y-%m-%d %H:%M:%S") if isinstance(when, datetime) else "-"
        message = str(r.record.get("message", "")).replace("\n", " ")[:100]
        out.write(f"{r.source:<42} {r.record.get('reason', ''):<20} {stamp:<20} {message}\n")


def as_json(rows: Sequence[DeadLetterRow]) -> list[dict[str, Any]]:
    """JSON-ready rows (bytes as hex, times as ISO 8601)."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, datetime):
            return value.isoformat()
        return value

    return [
        {"partition": r.partition, "offset": r.offset, **{k: plain(v) for k, v in r.record.items()}}
        for r in rows
    ]


def redrive(rows: Sequence[DeadLetterRow], conn: KafkaConnection) -> int:
    """Produce each dead letter's original bytes back to its source topic; return the count."""
    producer = Producer(producer_config(conn))
    for row in rows:
        r = row.record
        producer.produce(
            r["source_topic"],
            key=r.get("source_key"),
            value=r["original"],
            headers=[(REDRIVE_HEADER, b"1")],
        )
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining:
        msg = f"{remaining} re-driven records were not acknowledged by Kafka"
        raise LeadstreamError(msg)
    return len(rows)


def run_dead_letters(
    settings: Settings,
    *,
    reasons: Sequence[str],
    source_topics: Sequence[str],
    sources: Sequence[str],
    as_json_output: bool,
    do_redrive: bool,
    serde: AvroSerde | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Run ``leadstream dead-letters``: summary, JSON, or re-drive of the selection.

    Standard output carries the summary, the JSON or the re-drive line; standard error the
    live count on a terminal and, always, the final count of dead letters read.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    serde = serde or AvroSerde.from_settings(settings)
    conn = settings.kafka_connection()
    topic = settings.topic_dead_letter
    progress = Progress(err, "read", "dead letters")
    try:
        everything = read_dead_letters(conn, topic, serde, progress=progress)
    finally:
        progress.clear()  # an error starts on a clean line
    progress.finish(f"read {len(everything)} dead letters from {topic}")
    rows = select(everything, reasons, source_topics, sources)
    if do_redrive:
        count = redrive(rows, conn)
        by_topic = Counter(str(r.record["source_topic"]) for r in rows)
        where = ", ".join(f"{n} to {t}" for t, n in by_topic.most_common()) or "nothing"
        out.write(f"re-drove {count} dead letters: {where}\n")
        return 0
    if as_json_output:
        json.dump(as_json(rows), out, indent=2)
        out.write("\n")
    else:
        summarise(rows, out)
    return 0
