"""streams/ops/deadletters.py without a broker: selection (--reason, --source-topic, --source),
unreadable dead letters, the summary and JSON, and re-driving (input and delivery-side)."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING

from streams.connection import KafkaConnection
from streams.errors import ConfigError, LeadstreamError
from streams.ops import deadletters, progress
from streams.ops.deadletters import DeadLetterRow, as_json, redrive, select, summarise
from streams.serde.pipeline import REDRIVE_HEADER

AT = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
CONN = KafkaConnection("broker:9092")


def _row(offset: int, topic: str, reason: str, source_offset: int, **extra: Any) -> DeadLetterRow:
    record = {
        "source_topic": topic,
        "source_partition": 1,
        "source_offset": source_offset,
        "source_key": b"lead-1",
        "reason": reason,
        "message": f"{reason} at {source_offset}",
        "field": None,
        "event_id": None,
        "original": b"\x00\x00\x00\x00\x01orig",
        "dead_lettered_at": AT,
        **extra,
    }
    return DeadLetterRow(0, offset, record)


UNREADABLE = DeadLetterRow(
    0, 9, {"reason": "unreadable_dead_letter", "message": "5 bytes is too short"}
)
ROWS = [
    _row(0, "crm.lead-status-changed", "unmatched_lead", 10),
    _row(1, "leads.form-submitted", "missing_field", 11),
    _row(2, "leadstream.conversions", "api_rejected", 12, event_id="evt-1:Purchase"),
    UNREADABLE,
]


def test_select_without_filters_keeps_every_readable_dead_letter() -> None:
    assert select(ROWS) == ROWS[:3]  # an unreadable one has no source to re-drive to


def test_select_by_source_topic() -> None:
    assert select(ROWS, source_topics=["leads.form-submitted"]) == [ROWS[1]]
    assert select(ROWS, source_topics=["leads.form-submitted", "leadstream.conversions"]) == [
        ROWS[1],
        ROWS[2],
    ]
    assert select(ROWS, source_topics=["nope"]) == []


def test_select_by_exact_source() -> None:
    assert select(ROWS, sources=["leadstream.conversions:1:12"]) == [ROWS[2]]
    assert select(ROWS, sources=["leadstream.conversions:1:1"]) == []  # exact, not a prefix


def test_filters_combine() -> None:
    assert select(ROWS, reasons=["missing_field"], source_topics=["leads.form-submitted"]) == [
        ROWS[1]
    ]
    assert select(ROWS, reasons=["missing_field"], sources=["crm.lead-status-changed:1:10"]) == []


def test_summary_counts_unreadable_dead_letters_without_crashing() -> None:
    out = io.StringIO()
    summarise(ROWS, out)
    text = out.getvalue()
    assert text.startswith("4 dead letters\n")
    assert "unreadable_dead_letter" in text and "5 bytes is too short" in text
    assert "crm.lead-status-changed:1:10" in text and "2026-11-30 03:00:00" in text
    assert "(unreadable at partition 0 offset 9)" in text


def test_summary_of_nothing() -> None:
    out = io.StringIO()
    summarise([], out)
    assert out.getvalue() == "0 dead letters\n"


def test_json_is_plain() -> None:
    rows = as_json([ROWS[2], UNREADABLE])
    assert rows[0]["original"] == b"\x00\x00\x00\x00\x01orig".hex()
    assert rows[0]["dead_lettered_at"] == AT.isoformat()
    assert rows[0]["event_id"] == "evt-1:Purchase"
    assert rows[1] == {
        "partition": 0,
        "offset": 9,
        "reason": "unreadable_dead_letter",
        "message": "5 bytes is too short",
    }


class FakeProducer:
    """Records what would be produced; ``unacked`` records stay unacknowledged at flush."""

    made: list[FakeProducer] = []

    def __init__(self, config: dict[str, Any], unacked: int = 0) -> None:
        self.config = config
        self.produced: list[dict[str, Any]] = []
        self.unacked = unacked
        FakeProducer.made.append(self)

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return self.unacked


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.made = []
    monkeypatch.setattr(deadletters, "Producer", FakeProducer)
    return FakeProducer


def test_redrive_sends_inputs_and_delivery_side_dead_letters_back_to_their_source(
    producer: type[FakeProducer],
) -> None:
    count = redrive(select(ROWS), CONN)

    assert count == 3
    sent = producer.made[0].produced
    assert [(s["topic"], s["key"], s["value"]) for s in sent] == [
        ("crm.lead-status-changed", b"lead-1", b"\x00\x00\x00\x00\x01orig"),
        ("leads.form-submitted", b"lead-1", b"\x00\x00\x00\x00\x01orig"),
        # a conversion the API rejected goes back to the conversions topic, for delivery again
        ("leadstream.conversions", b"lead-1", b"\x00\x00\x00\x00\x01orig"),
    ]
    assert all(s["headers"] == [(REDRIVE_HEADER, b"1")] for s in sent)


def test_redrive_fails_loudly_when_kafka_does_not_acknowledge(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deadletters, "Producer", lambda config: FakeProducer(config, unacked=2))
    with pytest.raises(LeadstreamError, match="2 re-driven records were not acknowledged"):
        redrive(select(ROWS), CONN)


def test_redrive_of_nothing_produces_nothing(producer: type[FakeProducer]) -> None:
    assert redrive([], CONN) == 0
    assert producer.made[0].produced == []


# --- reading: from the earliest retained offset, with a live count and a final count ----------


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    """A dead-letter topic of two partitions whose heads were deleted (offsets 40 and 7 on)."""

    made: list[FakeConsumer] = []
    topics: tuple[str, ...] = ("leadstream.dead-letter",)

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.assigned: list[tuple[str, int, int]] = []
        self.queue = [FakeMessage(0, 40, b"a"), FakeMessage(1, 7, b"b"), FakeMessage(0, 41, b"c")]
        self.closed = False
        FakeConsumer.made.append(self)

    def list_topics(self, topic: str, timeout: float) -> Any:
        from types import SimpleNamespace

        known = {t: SimpleNamespace(error=None, partitions={0: None, 1: None}) for t in self.topics}
        return SimpleNamespace(topics=known)

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.queue.pop(0) if self.queue else None

    def close(self) -> None:
        self.closed = True


class FakeSerde:
    def decode(self, value: bytes, record_name: str) -> dict[str, Any]:
        assert record_name == "DeadLetter"
        return {**ROWS[0].record, "message": value.decode()}


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    for name in list(os.environ):  # the settings are the defaults
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)
    FakeConsumer.made = []
    monkeypatch.setattr(deadletters, "Consumer", FakeConsumer)
    return FakeConsumer


def test_reading_starts_at_the_earliest_retained_offset_not_at_zero(
    consumer: type[FakeConsumer],
) -> None:
    rows = deadletters.read_dead_letters(
        CONN,
        "leadstream.dead-letter",
        FakeSerde(),
        idle=0.05,  # type: ignore[arg-type]
    )

    # Offset 0 of a partition whose head was deleted is out of range, and the reset policy
    # would then jump to the end: nothing listed. OFFSET_BEGINNING is the low watermark.
    made = consumer.made[0]
    assert made.assigned == [
        ("leadstream.dead-letter", 0, OFFSET_BEGINNING),
        ("leadstream.dead-letter", 1, OFFSET_BEGINNING),
    ]
    assert made.config["auto.offset.reset"] == "earliest"
    assert [(r.partition, r.offset) for r in rows] == [(0, 40), (0, 41), (1, 7)]
    assert made.closed


def test_a_missing_dead_letter_topic_names_the_setting(consumer: type[FakeConsumer]) -> None:
    with pytest.raises(ConfigError, match="^LEADSTREAM_TOPIC_DEAD_LETTER: topic 'nope' does not"):
        deadletters.read_dead_letters(CONN, "nope", FakeSerde(), idle=0.05)  # type: ignore[arg-type]
    assert consumer.made[0].closed


@pytest.mark.parametrize("as_json_output", [True, False])
def test_the_count_read_ends_on_stderr_and_stdout_keeps_its_format(
    consumer: type[FakeConsumer], as_json_output: bool
) -> None:
    out, err = io.StringIO(), io.StringIO()

    code = _run(out, err, as_json_output=as_json_output)

    assert code == 0
    assert err.getvalue() == "read 3 dead letters from leadstream.dead-letter\n"
    if as_json_output:
        assert [r["offset"] for r in json.loads(out.getvalue())] == [40, 41, 7]
    else:
        assert out.getvalue().startswith("3 dead letters\n")


def test_a_terminal_sees_the_count_move(
    consumer: type[FakeConsumer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    out, err = io.StringIO(), FakeTTY()

    assert _run(out, err, as_json_output=True) == 0

    text = err.getvalue()
    assert "\rread 1 dead letters (" in text and "\rread 3 dead letters (" in text
    assert text.endswith("\rread 3 dead letters from leadstream.dead-letter\n")
    json.loads(out.getvalue())  # standard output holds the JSON alone


def _run(out: io.StringIO, err: io.StringIO, *, as_json_output: bool) -> int:
    from streams.settings import load_settings

    return deadletters.run_dead_letters(
        load_settings(),
        reasons=[],
        source_topics=[],
        sources=[],
        as_json_output=as_json_output,
        do_redrive=False,
        serde=FakeSerde(),  # type: ignore[arg-type]
        out=out,
        err=err,
    )
