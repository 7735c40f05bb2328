"""The record contract: one table, agreeing with domain.md §1, the .avsc files and Settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streams.errors import LeadstreamError
from streams.serde import contract
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "schemas"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


# --- the table ---------------------------------------------------------------------------------


def test_the_table_is_domain_md_section_1() -> None:
    s = Settings()
    rows = [(r.topic(s), r.key_fields, r.name, r.role) for r in contract.RECORDS]
    assert rows == [
        ("leads.form-submitted", ("lead_id",), "FormSubmitted", "input"),
        ("leads.booking-created", ("lead_id", "booking_id"), "BookingCreated", "input"),
        ("crm.lead-status-changed", ("lead_id",), "LeadStatusChanged", "input"),
        ("leadstream.conversions", ("lead_id",), "Conversion", "output"),
        ("leadstream.deliveries", ("event_id",), "DeliveryReceipt", "output"),
        ("leadstream.dead-letter", (), "DeadLetter", "output"),  # key: the source record's
    ]
    assert contract.INPUTS == (
        contract.FORM_SUBMITTED,
        contract.BOOKING_CREATED,
        contract.LEAD_STATUS_CHANGED,
    )


@pytest.mark.parametrize("rec", contract.RECORDS, ids=lambda r: r.name)
def test_each_record_names_its_schema_file_and_a_topic_setting(rec: contract.Record) -> None:
    schema = json.loads((SCHEMAS / rec.schema_file).read_text(encoding="utf-8"))
    assert schema["name"] == rec.name
    assert rec.topic_setting in Settings.model_fields
    assert rec.topic_setting.startswith("topic_")
    fields = {f["name"] for f in schema["fields"]}
    assert set(rec.key_fields) <= fields


def test_every_avsc_file_belongs_to_one_record() -> None:
    on_disk = sorted(p.name for p in SCHEMAS.glob("*.avsc"))
    assert on_disk == sorted(r.schema_file for r in contract.RECORDS)
    assert len({r.name for r in contract.RECORDS}) == len(contract.RECORDS)


def test_topics_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED", "hubspot.stages")
    monkeypatch.setenv("LEADSTREAM_TOPIC_DEAD_LETTER", "dlq")
    s = Settings()

    assert contract.topics_by_record(s, contract.INPUTS) == {
        "FormSubmitted": "leads.form-submitted",
        "BookingCreated": "leads.booking-created",
        "LeadStatusChanged": "hubspot.stages",
    }
    by_topic = contract.records_by_topic(s)
    assert by_topic["hubspot.stages"] is contract.LEAD_STATUS_CHANGED
    assert by_topic["dlq"] is contract.DEAD_LETTER
    assert "crm.lead-status-changed" not in by_topic


def test_record_by_name() -> None:
    assert contract.record("BookingCreated") is contract.BOOKING_CREATED
    assert contract.find("Nope") is None
    with pytest.raises(LeadstreamError) as info:
        contract.record("Nope")
    assert str(info.value) == (
        "no record is called 'Nope' (known: FormSubmitted, BookingCreated, LeadStatusChanged, "
        "Conversion, DeliveryReceipt, DeadLetter)"
    )


# --- record_key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_name", "record", "key"),
    [
        ("FormSubmitted", {"lead_id": "lead-1", "event_id": "e1"}, b"lead-1"),
        ("LeadStatusChanged", {"lead_id": "lead-2", "change_id": "c1"}, b"lead-2"),
        ("BookingCreated", {"lead_id": "lead-3", "booking_id": "bk-3"}, b"lead-3"),
        ("BookingCreated", {"lead_id": None, "booking_id": "bk-4"}, b"bk-4"),
        ("BookingCreated", {"booking_id": "bk-5"}, b"bk-5"),
        ("BookingCreated", {"lead_id": "", "booking_id": "bk-6"}, b"bk-6"),
        ("Conversion", {"lead_id": "lead-7", "event_id": "x"}, b"lead-7"),
        ("DeliveryReceipt", {"lead_id": "lead-8", "event_id": "evt-8"}, b"evt-8"),
        ("DeadLetter", {"source_key": b"k", "event_id": "evt-9"}, None),
        ("FormSubmitted", {"event_id": "e1"}, None),
        ("Unknown", {"lead_id": "lead-9"}, None),
        ("FormSubmitted", {"lead_id": "léad"}, "léad".encode()),
    ],
)
def test_record_key(record_name: str, record: dict[str, object], key: bytes | None) -> None:
    assert contract.record_key(record_name, record) == key
