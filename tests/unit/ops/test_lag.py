"""streams/ops/lag.py edge cases without a broker: no timestamp, the partition filter, clamping."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams.connection import KafkaConnection
from streams.ops import lag
from streams.ops.lag import LagProbe, PartitionLag, _age, print_table

NOW = 1_800_000_000.0


@dataclass
class FakeMessage:
    ts: int
    kind: int = 1
    err: Any = None

    def timestamp(self) -> tuple[int, int]:
        return self.kind, self.ts

    def error(self) -> Any:
        return self.err


@dataclass
class FakeConsumer:
    """Watermarks per partition and the record found at an offset (by timestamp)."""

    watermarks: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    messages: dict[tuple[str, int, int], FakeMessage | None] = field(default_factory=dict)
    assigned: list[tuple[str, int, int]] = field(default_factory=list)
    unassigned: int = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return self.watermarks[(tp.topic, tp.partition)]

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition, tp.offset) for tp in tps]

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.messages.get(self.assigned[-1])

    def unassign(self) -> None:
        self.unassigned += 1


@dataclass
class FakeTopic:
    partitions: dict[int, object]


@dataclass
class FakeMetadata:
    topics: dict[str, FakeTopic]


@dataclass
class FakeAdmin:
    metadata: FakeMetadata

    def list_topics(self, timeout: float) -> FakeMetadata:
        return self.metadata


def _probe(
    consumer: FakeConsumer,
    topics: dict[str, int],
    committed: dict[tuple[str, int], int],
    ends: dict[tuple[str, int], int | None],
    monkeypatch: pytest.MonkeyPatch,
    confirm: bool = True,
) -> LagProbe:
    probe = LagProbe.__new__(LagProbe)  # no broker: the connections are fakes
    probe.group = "g"
    probe._conn = KafkaConnection("fake:9092")
    probe._confirm = confirm
    probe._admin = FakeAdmin(  # type: ignore[assignment]
        FakeMetadata({t: FakeTopic(dict.fromkeys(range(n))) for t, n in topics.items()})
    )
    probe._consumer = consumer  # type: ignore[assignment]
    monkeypatch.setattr(
        lag,
        "committed_offsets",
        lambda admin, group: [TopicPartition(t, p, o) for (t, p), o in committed.items()],
    )
    monkeypatch.setattr(lag.offsets, "fetched_end_offsets", lambda conn, listed: ends)
    return probe


# --- _age ---------------------------------------------------------------------------------------


def test_age_is_seconds_since_the_record_was_produced() -> None:
    consumer = FakeConsumer(messages={("t", 0, 5): FakeMessage(int((NOW - 42.5) * 1000))})
    assert _age(consumer, "t", 0, 5, NOW) == pytest.approx(42.5)  # type: ignore[arg-type]
    assert consumer.assigned == [("t", 0, 5)] and consumer.unassigned == 1


@pytest.mark.parametrize("ts", [0, -1])
def test_record_without_a_timestamp_has_no_age(ts: int) -> None:
    consumer = FakeConsumer(messages={("t", 0, 5): FakeMessage(ts, kind=0)})
    assert _age(consumer, "t", 0, 5, NOW) is None  # type: ignore[arg-type]


def test_unreadable_or_missing_record_has_no_age() -> None:
    consumer = FakeConsumer(messages={("t", 0, 5): FakeMessage(1, err="boom")})
    assert _age(consumer, "t", 0, 5, NOW) is None  # type: ignore[arg-type]
    assert _age(consumer, "t", 0, 6, NOW) is None  # type: ignore[arg-type]
    assert consumer.unassigned == 2  # unassigned even when nothing came


def test_a_record_from_the_future_clamps_to_zero_age() -> None:
    consumer = FakeConsumer(messages={("t", 0, 5): FakeMessage(int((NOW + 30) * 1000))})
    assert _age(consumer, "t", 0, 5, NOW) == 0.0  # type: ignore[arg-type]


# --- measure ------------------------------------------------------------------------------------


def test_lag_is_log_end_minus_committed_with_the_age_of_the_first_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer(
        watermarks={("t", 0): (0, 10), ("t", 1): (0, 7)},
        messages={("t", 0, 4): FakeMessage(int((NOW - 9) * 1000))},
    )
    probe = _probe(
        consumer, {"t": 2}, {("t", 0): 4, ("t", 1): 7}, {("t", 0): 10, ("t", 1): 7}, monkeypatch
    )

    rows = probe.measure(now=NOW)

    assert rows == [
        PartitionLag("g", "t", 0, 4, 10, 6, pytest.approx(9.0)),  # type: ignore[arg-type]
        PartitionLag("g", "t", 1, 7, 7, 0, 0.0),  # caught up: no record is read for its age
    ]
    assert consumer.assigned == [("t", 0, 4)]


def test_partition_filter_measures_only_the_given_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer(watermarks={("t", 0): (0, 3), ("t", 1): (0, 3), ("u", 0): (0, 3)})
    probe = _probe(
        consumer,
        {"t": 2, "u": 1},
        {("t", 0): 3, ("t", 1): 3, ("u", 0): 3},
        {("t", 1): 3},
        monkeypatch,
    )

    rows = probe.measure(partitions={("t", 1)}, now=NOW)

    assert [(r.topic, r.partition) for r in rows] == [("t", 1)]


def test_topics_argument_includes_uncommitted_partitions_from_the_low_watermark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer(
        watermarks={("t", 0): (2, 5)}, messages={("t", 0, 2): FakeMessage(0, kind=0)}
    )
    probe = _probe(consumer, {"t": 1, "gone": 0}, {}, {("t", 0): 5}, monkeypatch)

    rows = probe.measure(topics=["t", "missing"], now=NOW)

    assert rows == [PartitionLag("g", "t", 0, None, 5, 3, None)]  # no timestamp: no age


def test_committed_past_the_log_end_clamps_to_zero_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = FakeConsumer(watermarks={("t", 0): (0, 5)})
    probe = _probe(consumer, {"t": 1}, {("t", 0): 9}, {("t", 0): None}, monkeypatch)

    rows = probe.measure(now=NOW)

    assert rows == [PartitionLag("g", "t", 0, 9, 0, 0, 0.0)]  # an unknown end reads as 0


def test_table_shows_dashes_for_unknown_values() -> None:
    out = io.StringIO()
    print_table([PartitionLag("g", "t", 0, None, 5, 3, None)], out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "GROUP",
        "TOPIC",
        "PART",
        "COMMITTED",
        "LOG-END",
        "LAG",
        "LAG-SECONDS",
    ]
    assert lines[1].split() == ["g", "t", "0", "-", "5", "3", "-"]


def test_without_confirmation_the_listed_end_is_the_log_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer(watermarks={("t", 0): (0, 5)})
    probe = _probe(consumer, {"t": 1}, {("t", 0): 5}, {("t", 0): 99}, monkeypatch, confirm=False)

    assert probe.measure(now=NOW) == [PartitionLag("g", "t", 0, 5, 5, 0, 0.0)]  # 99 unused
