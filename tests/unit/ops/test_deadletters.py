"""streams/ops/deadletters.py without a broker: selection (--reason, --source-topic, --source),
unreadable dead letters, the summary and JSON, and re-driving (input and delivery-side)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.connection import KafkaConnection
from streams.errors import LeadstreamError
from streams.ops import deadletters
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
