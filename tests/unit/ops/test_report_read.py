"""The report's topic reader against a fake consumer: bounds, EOF, timestamps, bad records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from streams.errors import SerdeError
from streams.ops.report import read
from streams.ops.report.read import _Progress, read_topic

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
IN_RANGE = int((SINCE + timedelta(hours=1)).timestamp() * 1000)
TOO_LATE = int((UNTIL + timedelta(hours=1)).timestamp() * 1000)


@dataclass
class Msg:
    part: int
    off: int
    stamp: int = IN_RANGE
    value_: bytes | None = b"ok"
    eof: bool = False

    def error(self) -> KafkaError | None:
        return KafkaError(KafkaError._PARTITION_EOF) if self.eof else None

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def timestamp(self) -> tuple[int, int]:
        return (1, self.stamp)

    def value(self) -> bytes | None:
        return self.value_


class FakeConsumer:
    def __init__(self, messages: list[Msg]) -> None:
        self.messages = list(messages)
        self.assigned: list[tuple[int, int]] = []
        self.unassigned = False

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in tps]

    def unassign(self) -> None:
        self.unassigned = True

    def poll(self, timeout: float) -> Msg | None:
        return self.messages.pop(0) if self.messages else None


def decode(data: bytes | None) -> dict[str, Any]:
    if data != b"ok":
        text = "bad"
        raise SerdeError(text, reason="undecodable")
    return {"v": 1}


def _read(messages: list[Msg], bounds: dict[int, tuple[int, int]]) -> tuple[Any, ...]:
    consumer = FakeConsumer(messages)
    rows, n, bad = read_topic(consumer, "t", bounds, SINCE, UNTIL, decode, _Progress(None))  # type: ignore[arg-type]
    return rows, n, bad, consumer


def test_reads_up_to_the_end_taken_at_start_and_filters_by_time() -> None:
    rows, n, bad, consumer = _read(
        [
            Msg(0, 5),
            Msg(0, 6, stamp=TOO_LATE),  # after --until: skipped
            Msg(1, 0, value_=b"junk"),  # undecodable: counted, skipped
            Msg(0, 7),
            Msg(1, 1),
            Msg(0, 8),  # produced after the report started: beyond the end
        ],
        {0: (5, 8), 1: (0, 2), 2: (3, 3)},  # partition 2 has nothing to read
    )
    assert consumer.assigned == [(0, 5), (1, 0)]  # partition 2 has nothing in range
    assert consumer.unassigned
    assert (len(rows), n, bad) == (3, 4, 1)
    assert consumer.messages == [Msg(0, 8)], "stopped as soon as every partition was done"


def test_a_partition_ending_in_markers_ends_at_eof(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "_STALL_SECONDS", 0.5)
    rows, n, bad, _ = _read([Msg(0, 0), Msg(0, 2, eof=True)], {0: (0, 2)})
    assert (len(rows), n, bad) == (1, 1, 0)


def test_a_partition_that_stops_answering_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read, "_STALL_SECONDS", 0.0)
    with pytest.raises(read.ReadError, match="t: no records for 0s from partitions 0"):
        _read([], {0: (0, 1)})
