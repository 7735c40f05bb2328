"""``leadstream produce`` pieces: JSON Lines parsing, keys, topics, and bad-line reporting."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from streams.connection import KafkaConnection
from streams.errors import LeadstreamError
from streams.local.registry.server import RegistryServer
from streams.ops import cli
from streams.ops import produce as produce_module
from streams.ops import progress as progress_module
from streams.ops.produce import (
    numbered_lines,
    parse_json_record,
    produce_lines,
    producer_config,
    record_for_topic,
    timestamp_fields,
)
from streams.serde import contract
from streams.serde.avro import AvroSerde
from streams.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


def _schema_text(record_name: str) -> str:
    return (SCHEMAS / contract.record(record_name).schema_file).read_text(encoding="utf-8")


# --- parse_json_record ------------------------------------------------------------------------

TS = frozenset({"occurred_at", "scheduled_for"})


def test_iso_z_becomes_aware_utc() -> None:
    rec = parse_json_record('{"occurred_at": "2025-03-14T12:00:00Z", "lead_id": "l1"}', TS)
    assert rec == {"occurred_at": datetime(2025, 3, 14, 12, tzinfo=UTC), "lead_id": "l1"}
    assert rec["occurred_at"].utcoffset() == timedelta(0)


def test_iso_offset_is_kept_and_compares_as_the_same_instant() -> None:
    rec = parse_json_record('{"occurred_at": "2025-03-14T14:00:00.250+02:00"}', TS)
    when = rec["occurred_at"]
    assert when.utcoffset() == timedelta(hours=2)
    assert when == datetime(2025, 3, 14, 12, 0, 0, 250_000, tzinfo=UTC)
    assert when.tzinfo == timezone(timedelta(hours=2))


def test_naive_timestamp_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="field 'scheduled_for'") as info:
        parse_json_record(
            '{"occurred_at": "2025-03-14T12:00:00Z", "scheduled_for": "2025-03-20T09:00:00"}', TS
        )
    assert "no timezone" in str(info.value)


def test_epoch_millis_and_nulls_pass_through() -> None:
    rec = parse_json_record('{"occurred_at": 1741953600000, "scheduled_for": null}', TS)
    assert rec == {"occurred_at": 1741953600000, "scheduled_for": None}


def test_strings_outside_timestamp_fields_are_not_parsed() -> None:
    rec = parse_json_record('{"page_url": "2025-03-14T12:00:00Z"}', TS)
    assert rec == {"page_url": "2025-03-14T12:00:00Z"}


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        ("{not json", "Expecting property name"),
    ],
)
def test_non_object_lines_are_value_errors(line: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_json_record(line, TS)


def test_unparsable_timestamp_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="yesterday"):
        parse_json_record('{"occurred_at": "yesterday"}', TS)


# --- timestamp_fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_name", "fields"),
    [
        ("FormSubmitted", {"occurred_at"}),
        ("BookingCreated", {"occurred_at", "scheduled_for"}),
        ("LeadStatusChanged", {"changed_at"}),
        ("Conversion", {"event_time", "created_at"}),
        ("DeliveryReceipt", {"decided_at"}),
        ("DeadLetter", {"dead_lettered_at"}),
    ],
)
def test_timestamp_fields_from_the_schemas(record_name: str, fields: set[str]) -> None:
    assert timestamp_fields(_schema_text(record_name)) == frozenset(fields)


def test_timestamp_fields_ignores_plain_longs() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "plain", "type": "long"},
            {"name": "micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "opt", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        ],
    }
    assert timestamp_fields(json.dumps(schema)) == frozenset({"opt"})


# --- record_for_topic -------------------------------------------------------------------------


def test_record_for_default_topics() -> None:
    s = Settings()
    assert record_for_topic(s, "leads.form-submitted") == "FormSubmitted"
    assert record_for_topic(s, "leads.booking-created") == "BookingCreated"
    assert record_for_topic(s, "crm.lead-status-changed") == "LeadStatusChanged"
    assert record_for_topic(s, "leadstream.conversions") == "Conversion"
    assert record_for_topic(s, "leadstream.deliveries") == "DeliveryReceipt"


def test_record_for_configured_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED", "hubspot.stages")
    s = Settings()
    assert record_for_topic(s, "hubspot.stages") == "LeadStatusChanged"
    with pytest.raises(LeadstreamError):
        record_for_topic(s, "crm.lead-status-changed")


def test_unknown_topic_lists_known_topics() -> None:
    with pytest.raises(LeadstreamError) as info:
        record_for_topic(Settings(), "nope")
    message = str(info.value)
    assert "'nope'" in message
    assert (
        "known: crm.lead-status-changed, leads.booking-created, leads.form-submitted, "
        "leadstream.conversions, leadstream.deliveries;" in message
    )
    assert "--record" in message


# --- producer_config / numbered_lines ---------------------------------------------------------


def test_producer_config_is_idempotent_murmur2() -> None:
    assert producer_config("b:9092") == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "PLAINTEXT",
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
    }


def test_producer_config_carries_the_connection_security() -> None:
    conn = KafkaConnection(
        "b:9093", "SASL_SSL", "SCRAM-SHA-512", "user", "pw", ssl_check_hostname=False
    )
    conf = producer_config(conn)
    assert conf["sasl.password"] == "pw"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["ssl.endpoint.identification.algorithm"] == "none"
    assert conf["acks"] == "all"


def test_numbered_lines_skip_blanks_but_keep_numbers() -> None:
    stream = io.StringIO('{"a": 1}\n\n   \n{"b": 2}\n')
    assert list(numbered_lines(stream)) == [(1, '{"a": 1}\n'), (4, '{"b": 2}\n')]


# --- produce_lines error reporting ------------------------------------------------------------


def _unreachable_bootstrap() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_bad_lines_are_reported_with_their_numbers(serde: AvroSerde) -> None:
    """Only bad lines: nothing is queued, so flush returns at once even without a broker."""
    lines = [
        (2, "{not json\n"),
        (5, '{"lead_id": "lead-1"}\n'),
        (7, '{"event_id": "e", "lead_id": "l", "page_url": "u", "occurred_at": "2025-01-01"}\n'),
        (9, "[]\n"),
    ]
    errors = io.StringIO()
    started = time.monotonic()

    report = produce_lines(
        lines, "leads.form-submitted", "FormSubmitted", serde, _unreachable_bootstrap(), errors
    )

    assert time.monotonic() - started < 5
    assert (report.produced, report.bad_lines) == (0, 4)
    reported = errors.getvalue().splitlines()
    assert [line.split(":", 1)[0] for line in reported] == ["line 2", "line 5", "line 7", "line 9"]
    assert "event_id" in reported[1]  # the missing required field
    assert "field 'occurred_at'" in reported[2]
    assert "expected a JSON object, got list" in reported[3]


def test_no_lines_produce_nothing(serde: AvroSerde) -> None:
    errors = io.StringIO()
    report = produce_lines(
        [], "crm.lead-status-changed", "LeadStatusChanged", serde, _unreachable_bootstrap(), errors
    )
    assert (report.produced, report.bad_lines, errors.getvalue()) == (0, 0, "")


# --- progress on a terminal, the final count, a full local queue ------------------------------


class FakeTTY(io.StringIO):
    """Standard error as an interactive terminal."""

    def isatty(self) -> bool:
        return True


class QueueingProducer:
    """Accepts every record; the first ``full`` produce calls find the local queue full."""

    def __init__(self, config: dict[str, object], full: int = 0) -> None:
        self.values: list[bytes] = []
        self.full = full
        self.polls: list[float] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: object) -> None:
        if self.full:
            self.full -= 1
            msg = "Local: Queue full"
            raise BufferError(msg)
        self.values.append(value)

    def poll(self, timeout: float) -> int:
        self.polls.append(timeout)
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def _status_line(n: int) -> str:
    record = {
        "change_id": f"c{n}",
        "lead_id": f"lead-{n}",
        "status": "qualified",
        "changed_at": "2026-11-30T03:00:00Z",
        "crm": "hubspot",
    }
    return json.dumps(record) + "\n"


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> list[QueueingProducer]:
    made: list[QueueingProducer] = []

    def make(config: dict[str, object]) -> QueueingProducer:
        made.append(QueueingProducer(config, full=2))
        return made[-1]

    monkeypatch.setattr(produce_module, "Producer", make)
    return made


def test_a_terminal_sees_the_count_move_and_bad_lines_on_clean_lines(
    serde: AvroSerde, fake_producer: list[QueueingProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "INTERVAL", 0.0)  # redraw on every record
    lines = [(n, _status_line(n)) for n in range(1, 6)] + [(6, "{oops\n"), (7, _status_line(7))]
    errors = FakeTTY()

    report = produce_lines(
        lines, "crm.lead-status-changed", "LeadStatusChanged", serde, "b:9092", errors
    )

    assert (report.produced, report.bad_lines) == (6, 1)
    assert len(fake_producer[0].values) == 6  # the two "queue full" retries lost nothing
    assert fake_producer[0].polls.count(0.5) == 2  # waited for the queue to drain
    text = errors.getvalue()
    assert "\rproduced 5 records (" in text and "\rproduced 6 records (" in text
    # the bad line starts on an erased line, not after the live count
    assert re.search(r"\r {20,}\rline 6: ", text)
    assert re.search(r"\r {20,}\r$", text)  # the live line is erased at the end


def test_elsewhere_stderr_has_only_the_bad_lines(
    serde: AvroSerde, fake_producer: list[QueueingProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "INTERVAL", 0.0)
    lines = [(n, _status_line(n)) for n in range(1, 4)] + [(4, "[]\n")]
    errors = io.StringIO()

    report = produce_lines(
        lines, "crm.lead-status-changed", "LeadStatusChanged", serde, "b:9092", errors
    )

    assert (report.produced, report.bad_lines) == (3, 1)
    assert errors.getvalue() == "line 4: expected a JSON object, got list\n"


@pytest.mark.parametrize("terminal", [True, False])
def test_the_command_ends_with_the_count_on_stdout_and_no_live_line_left(
    registry: RegistryServer,
    fake_producer: list[QueueingProducer],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    terminal: bool,
) -> None:
    monkeypatch.setattr(progress_module, "INTERVAL", 0.0)
    monkeypatch.setattr(cli, "_preflight", lambda settings: None)
    monkeypatch.setenv("LEADSTREAM_SCHEMA_REGISTRY_URL", registry.url)
    data = tmp_path / "statuses.jsonl"
    data.write_text("".join(_status_line(n) for n in range(1, 4)), encoding="utf-8")
    err = FakeTTY() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)

    assert cli.main(["produce", "crm.lead-status-changed", str(data)]) == 0

    out = capsys.readouterr().out
    assert out == "produced 3 LeadStatusChanged records to crm.lead-status-changed; 0 bad lines\n"
    if terminal:
        assert "\rproduced 3 records (" in err.getvalue()
        assert err.getvalue().endswith("\r")  # the live line is erased before the count
    else:
        assert err.getvalue() == ""
