"""``leadstream produce``: encode JSON Lines with a topic's schema and produce them, keyed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from confluent_kafka import Producer

from streams.connection import KafkaConnection, as_connection
from streams.errors import ConfigError, LeadstreamError, SerdeError
from streams.ops.progress import Progress
from streams.serde import contract
from streams.serde.avro import AvroSerde
from streams.settings import Settings

logger = logging.getLogger(__name__)


def producer_config(conn: KafkaConnection | str) -> dict[str, Any]:
    """Idempotent, acks=all, and Kafka's Java-compatible murmur2 partitioner (what Faust uses).

    ``conn`` is the Kafka connection; a plain bootstrap string means a PLAINTEXT one (the local
    broker of tests and benchmarks).
    """
    return as_connection(conn).librdkafka(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 5,
        }
    )


def record_for_topic(settings: Settings, topic: str) -> str:
    """Return the record name a configured topic carries (:mod:`streams.serde.contract`).

    Only records keyed by their own fields are offered: a dead letter keeps its source record's
    key, which ``produce`` cannot know.
    """
    names = {
        t: rec.name for t, rec in contract.records_by_topic(settings).items() if rec.key_fields
    }
    if topic not in names:
        known = ", ".join(sorted(names))
        msg = f"no schema is known for topic {topic!r} (known: {known}; or pass --record)"
        raise ConfigError(msg)
    return names[topic]


def timestamp_fields(schema_text: str) -> frozenset[str]:
    """Names of the fields whose type is (or may be) ``timestamp-millis``."""
    out = set()
    for field in json.loads(schema_text)["fields"]:
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if any(isinstance(t, dict) and t.get("logicalType") == "timestamp-millis" for t in types):
            out.add(field["name"])
    return frozenset(out)


def parse_json_record(line: str, ts_fields: frozenset[str]) -> dict[str, Any]:
    """Parse one JSON line; ISO 8601 strings in timestamp fields become datetimes."""
    record = json.loads(line)
    if not isinstance(record, dict):
        msg = f"expected a JSON object, got {type(record).__name__}"
        raise ValueError(msg)
    for name in ts_fields:
        value = record.get(name)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                msg = f"field {name!r}: timestamp {value!r} has no timezone (add Z or +00:00)"
                raise ValueError(msg)
            record[name] = parsed
    return record


@dataclass
class ProduceReport:
    """What a produce run did."""

    produced: int = 0
    bad_lines: int = 0


def numbered_lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for non-blank lines."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def produce_lines(
    lines: Iterable[tuple[int, str]],
    topic: str,
    record_name: str,
    serde: AvroSerde,
    conn: KafkaConnection,
    errors: IO[str],
    progress: Progress | None = None,
) -> ProduceReport:
    """Encode and produce every line; report a bad line with its number and go on.

    ``errors`` gets the bad lines and, when it is a terminal, the live count (``progress``,
    by default one counting on ``errors``); the caller prints the final count.
    """
    ts_fields = timestamp_fields(serde.schema_text(record_name))
    producer = Producer(producer_config(conn))
    report = ProduceReport()
    progress = progress or Progress(errors, "produced", "records")
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    try:
        for number, line in lines:
            try:
                record = parse_json_record(line, ts_fields)
                value = serde.encode(topic, record_name, record)
            except (ValueError, SerdeError) as exc:
                report.bad_lines += 1
                progress.clear()
                errors.write(f"line {number}: {exc}\n")
                continue
            key = contract.record_key(record_name, record)
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full (a large file): let it drain
                    producer.poll(0.5)
            producer.poll(0)
            report.produced += 1
            progress.add()
    finally:
        progress.finish()  # erases the live line; an error or the final count follows
    remaining = producer.flush(30)
    if remaining or failures:
        msg = f"{remaining or len(failures)} records were not acknowledged by Kafka: {failures[:1]}"
        raise LeadstreamError(msg)
    return report
