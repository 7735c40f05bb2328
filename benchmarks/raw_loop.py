"""Measurement 1, the raw loop: confluent-kafka consume + fastavro decode, nothing else.

The physical limit of a Python worker here: librdkafka fetches, Python touches every message
once and decodes its Avro body (``schemaless_reader`` after stripping the 5-byte Confluent
header, writer schema looked up by the header's schema id). No consumer group: partitions are
assigned from the beginning, so no join delay is measured.
"""

from __future__ import annotations

import io
import json
import struct
import time
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from benchmarks.common import BenchError
from streams.serde.avro import load_schemas

_HEADER = struct.Struct(">bI")


@dataclass(frozen=True)
class RawResult:
    """What one raw-loop run measured."""

    records: int
    seconds: float
    bytes: int

    @property
    def per_second(self) -> float:
        """Records consumed and decoded per second, first to last record."""
        return self.records / self.seconds

    def to_json(self) -> dict[str, Any]:
        """JSON-ready details."""
        return {
            "records": self.records,
            "seconds": round(self.seconds, 4),
            "records_per_s": round(self.per_second, 1),
            "mean_value_bytes": round(self.bytes / self.records, 1),
        }


def writer_schemas(ids: dict[int, str]) -> dict[int, Any]:
    """Parse the writer schema of each schema id (``ids`` maps id -> record name)."""
    texts = load_schemas()
    return {
        schema_id: fastavro.parse_schema(json.loads(texts[name])) for schema_id, name in ids.items()
    }


def run_raw_loop(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    expected: int,
    writers: dict[int, Any],
    timeout: float,
) -> RawResult:
    """Consume ``expected`` records from the start of ``topics`` and decode each one."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    consumer.assign(
        [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(partitions)]
    )
    reader = fastavro.schemaless_reader
    unpack = _HEADER.unpack_from
    count = 0
    size = 0
    first = 0.0
    deadline = time.monotonic() + timeout
    try:
        while count < expected:
            if time.monotonic() > deadline:
                msg = f"raw loop: {count} of {expected} records after {timeout:.0f}s"
                raise BenchError(msg)
            batch = consumer.consume(1000, 0.5)
            if not batch:
                continue
            if not first:
                first = time.perf_counter()
            for message in batch:
                if message.error() is not None:
                    text = f"raw loop: consumer error {message.error()}"
                    raise BenchError(text)
                value = message.value()
                if value is None:
                    text = "raw loop: a record without a value"
                    raise BenchError(text)
                _magic, schema_id = unpack(value)
                reader(io.BytesIO(memoryview(value)[5:]), writers[schema_id], None)
                size += len(value)
            count += len(batch)
        last = time.perf_counter()
    finally:
        consumer.close()
    return RawResult(records=count, seconds=last - first, bytes=size)
