"""Read the six topics for a time range, by Kafka record timestamp, and decode them.

Each partition is sought to the first offset at or after ``since`` (``offsets_for_times``) and
read up to the end offsets of all six topics taken before reading starts, so a busy topic does
not keep the report reading forever and a receipt is not read without its conversion. A broker that
cannot look offsets up by time is read from its first offset and filtered by timestamp.
Records whose timestamp falls outside ``[since, until)`` are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streams.errors import ConfigError, LeadstreamError, SerdeError
from streams.ops.report.figures import History
from streams.runtime.offsets import fetched_end_offsets
from streams.serde import contract
from streams.serde.avro import AvroSerde
from streams.settings import Settings

logger = logging.getLogger(__name__)

# Fields the report needs from each input record: raw match keys are dropped as soon as a
# record is decoded (the report only needs to know a form exists, not who filled it in).
_INPUT_FIELDS = {
    "FormSubmitted": ("event_id", "lead_id", "occurred_at", "tiktok_lead_id", "ad_consent"),
    "BookingCreated": ("booking_id", "event_id", "lead_id", "occurred_at"),
    "LeadStatusChanged": ("change_id", "lead_id", "status", "changed_at", "crm"),
}
_STALL_SECONDS = 30.0
_METADATA_TIMEOUT = 10.0
# librdkafka's own log lines (connection refused, retrying...) go here, not to stderr: a failure
# surfaces once, as the one-line error of the exception it ends in.
_CLIENT_LOG = logging.getLogger(f"{__name__}.librdkafka")
_CLIENT_LOG.setLevel(logging.CRITICAL)


class ReadError(LeadstreamError):
    """Kafka could not be read (unreachable, a partition stopped answering)."""


def _consumer_config(settings: Settings) -> dict[str, Any]:
    """Return the report's confluent Consumer config; the one place the connection is built."""
    return settings.kafka_connection().librdkafka(
        **{
            "group.id": f"leadstream-report-{time.time_ns()}",  # never commits; assign() only
            "enable.auto.commit": False,
            "enable.partition.eof": True,  # a partition ending in markers or gaps ends at EOF
            "auto.offset.reset": "earliest",
        }
    )


@dataclass
class _Progress:
    """Records read so far, rewritten on one line of stderr when it is a terminal."""

    out: IO[str] | None
    topic: str = ""
    count: int = 0
    shown_at: float = 0.0

    def start(self, topic: str) -> None:
        self.topic, self.count, self.shown_at = topic, 0, 0.0
        self.show()

    def tick(self) -> None:
        self.count += 1
        if time.monotonic() - self.shown_at > 0.2:
            self.show()

    def show(self) -> None:
        if self.out is None:
            return
        self.shown_at = time.monotonic()
        self.out.write(f"\rreading {self.topic}: {self.count} records")
        self.out.flush()

    def done(self) -> None:
        if self.out is not None:
            self.show()
            self.out.write("\n")
            self.out.flush()


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _bounds(
    consumer: Consumer, topic: str, partitions: list[int], since_ms: int
) -> dict[int, tuple[int, int]]:
    """Return (start, end) offsets per partition; end is exclusive: the log end, taken now.

    The end is not looked up by ``until``'s time: a broker that answers time lookups loosely
    (Tansu answers offset 0 for any time) would end the read before it began. Records after
    ``until`` are skipped by their timestamp instead.
    """
    marks = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_METADATA_TIMEOUT)
        for p in partitions
    }
    try:
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in partitions], timeout=_METADATA_TIMEOUT
        )
    except KafkaException as exc:
        logger.warning("%s: no offsets by time (%s); reading from the start", topic, exc)
        return {p: marks[p] for p in partitions}
    out = {}
    for tp in starts:
        low, high = marks[tp.partition]
        # -1: no record at or after since; an error: read the partition and filter by time.
        start = low if tp.error is not None else high if tp.offset < 0 else max(low, tp.offset)
        out[tp.partition] = (start, high)
    return out


def topic_bounds(consumer: Consumer, topic: str, since: datetime) -> dict[int, tuple[int, int]]:
    """Return the (start, end) offsets to read per partition of ``topic`` ({} when missing)."""
    meta = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT).topics.get(topic)
    if meta is None or meta.error is not None:
        logger.debug("topic %s does not exist; counted as empty", topic)
        return {}
    return _bounds(consumer, topic, sorted(meta.partitions), _ms(since))


def _confirm_ends(
    settings: Settings, bounds: dict[str, dict[int, tuple[int, int]]]
) -> dict[str, dict[int, tuple[int, int]]]:
    """Raise each listed end to the end a fetch sees (:mod:`streams.runtime.offsets`).

    Only with ``LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS`` (the Tansu fallback): Kafka lists ends
    exactly, so nothing extra is read there; Tansu lists short ends after multi-record batches,
    and a report that trusted them would miss records.
    """
    listed = {(t, p): end for t, parts in bounds.items() for p, (_, end) in parts.items()}
    ends = fetched_end_offsets(settings.kafka_connection(), listed)
    return {
        t: {p: (start, ends[(t, p)] or end) for p, (start, end) in parts.items()}
        for t, parts in bounds.items()
    }


def read_topic(
    consumer: Consumer,
    topic: str,
    bounds: dict[int, tuple[int, int]],
    since: datetime,
    until: datetime,
    decode: Callable[[bytes | None], dict[str, Any]],
    progress: _Progress,
) -> tuple[list[dict[str, Any]], int, int]:
    """Read ``topic`` within ``bounds``, keeping records stamped in ``[since, until)``.

    Returns:
        The decoded records (undecodable ones skipped), records read, records undecodable.

    """
    since_ms, until_ms = _ms(since), _ms(until)
    todo = {p: b for p, b in bounds.items() if b[0] < b[1]}
    progress.start(topic)
    records: list[dict[str, Any]] = []
    read = bad = 0
    if todo:
        consumer.assign([TopicPartition(topic, p, b[0]) for p, b in todo.items()])
    last = time.monotonic()
    while todo:
        msg = consumer.poll(0.5)
        if msg is None:
            if time.monotonic() - last > _STALL_SECONDS:
                parts = ", ".join(str(p) for p in sorted(todo))
                text = f"{topic}: no records for {_STALL_SECONDS:.0f}s from partitions {parts}"
                raise ReadError(text)
            continue
        err = msg.error()
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                text = f"{topic}: {err}"
                raise ReadError(text)
            # The log end now is at or past the end taken at start: nothing more to read
            # (the last offsets may be transaction markers or compacted away).
            todo.pop(partition, None)
            continue
        last = time.monotonic()
        end = todo.get(partition, (0, -1))[1]
        if offset + 1 >= end:
            todo.pop(partition, None)
        if offset >= end:
            continue
        kind, stamp = msg.timestamp()
        if kind != 0 and not since_ms <= stamp < until_ms:  # 0: TIMESTAMP_NOT_AVAILABLE
            continue
        read += 1
        progress.tick()
        try:
            records.append(decode(msg.value()))
        except SerdeError as exc:
            bad += 1
            logger.debug("%s:%d:%d undecodable: %s", topic, partition, offset, exc)
    consumer.unassign()
    progress.done()
    return records, read, bad


def _trim(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: record.get(k) for k in fields}


def read_history(
    settings: Settings,
    since: datetime,
    until: datetime,
    serde: AvroSerde,
    progress_out: IO[str] | None = None,
) -> tuple[History, dict[str, int]]:
    """Read and decode the six topics; return the history and the records read per topic.

    ``records_read`` also holds ``<topic> undecodable`` entries when a record could not be
    decoded (it is left out of the figures).
    """
    progress = _Progress(progress_out)
    try:
        consumer = Consumer(_consumer_config(settings), logger=_CLIENT_LOG)
    except (KafkaException, ValueError, TypeError) as exc:  # a setting librdkafka refuses
        reason = _reason(exc) if isinstance(exc, KafkaException) else str(exc)
        text = f"Kafka client settings: {reason}"
        raise ConfigError(text) from None
    # Every topic of the contract, in its order (the order History takes them in).
    plan = [(r.topic(settings), r.name, _INPUT_FIELDS.get(r.name)) for r in contract.RECORDS]
    counts: dict[str, int] = {}
    decoded: list[list[dict[str, Any]]] = []
    try:
        try:
            bounds = {topic: topic_bounds(consumer, topic, since) for topic, _, _ in plan}
        except KafkaException as exc:
            text = f"cannot reach Kafka at {settings.kafka_bootstrap}: {_reason(exc)}"
            raise ReadError(text) from exc
        if settings.kafka_confirm_end_offsets:
            bounds = _confirm_ends(settings, bounds)
        for topic, record_name, fields in plan:

            def decode(data: bytes | None, name: str = record_name) -> dict[str, Any]:
                return serde.decode(data, name)

            try:
                rows, read, bad = read_topic(
                    consumer, topic, bounds[topic], since, until, decode, progress
                )
            except KafkaException as exc:
                text = f"cannot read {topic} from {settings.kafka_bootstrap}: {_reason(exc)}"
                raise ReadError(text) from exc
            if fields is not None:
                rows = [_trim(r, fields) for r in rows]
            if record_name == contract.DEAD_LETTER.name:
                for r in rows:
                    r.pop("original", None)
            counts[topic] = read
            if bad:
                counts[f"{topic} undecodable"] = bad
            decoded.append(rows)
    finally:
        consumer.close()
    forms, bookings, changes, conversions, receipts, dead = decoded
    return History(forms, bookings, changes, conversions, receipts, dead), counts
