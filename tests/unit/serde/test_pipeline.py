"""Pipeline: decode + validate inputs, dead letters with scrubbed PII, encode hashed inputs."""

from __future__ import annotations

import io
import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streams.domain.intake import form_from_record
from streams.domain.matchkeys import hash_phone, sha256_hex
from streams.domain.records import as_decoded, conversion_to_record
from streams.domain.types import Booking, FormSubmit, MatchKeys, SourceRef, StatusChange
from streams.errors import SerdeError
from streams.local.registry.server import RegistryServer
from streams.serde import pipeline as pipeline_module
from streams.serde.avro import AvroSerde, RegistryUnavailableError, frame
from streams.serde.pipeline import DeadLetterOut, Pipeline, Raw, scrub_pii
from streams.settings import Settings
from tests.unit.factories import (
    EMAIL,
    EMAIL_SHA,
    EXTERNAL_ID,
    EXTERNAL_ID_SHA,
    LEAD_ID,
    META_PHONE_SHA,
    NOW,
    PHONE,
    PHONE_SHA,
    make_booking,
    make_booking_record,
    make_conversion,
    make_form_record,
    make_form_submit,
    make_status_change,
    make_status_record,
)

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
TOPICS = {
    "FormSubmitted": "pipe.leads.form-submitted",
    "BookingCreated": "pipe.leads.booking-created",
    "LeadStatusChanged": "pipe.crm.lead-status-changed",
}
DEAD_LETTER_TOPIC = "pipe.leadstream.dead-letter"
# The raw PII of make_form_record(), as it appears in the encoded input.
RAW_FORM_PII = (b"Jane.Doe@Example.com", b"07700 900123", b"crm-user-42")


class FlakyClient(SchemaRegistryClient):
    """A real client whose registrations fail for chosen subjects, like a registry blip."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.fail_subjects: set[str] = set()

    def register_schema(self, subject_name: str, *args: Any, **kwargs: Any) -> Any:
        if subject_name in self.fail_subjects:
            msg = "connection refused (injected)"
            raise ConnectionError(msg)
        return super().register_schema(subject_name, *args, **kwargs)


def _client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url, "max.retries": 0})


@pytest.fixture(scope="module")
def pipeline(serde: AvroSerde) -> Pipeline:
    return Pipeline(serde, DEAD_LETTER_TOPIC, TOPICS)


def _raw(serde: AvroSerde, record_name: str, record: dict[str, Any], **kw: Any) -> Raw:
    value = serde.encode(TOPICS[record_name], record_name, record)
    fields: dict[str, Any] = {
        "topic": TOPICS[record_name],
        "partition": 2,
        "offset": 4711,
        "key": LEAD_ID.encode(),
        "value": value,
    }
    fields.update(kw)
    return Raw(**fields)


def _dead_letter(serde: AvroSerde, out: Any) -> dict[str, Any]:
    assert isinstance(out, DeadLetterOut), f"expected a dead letter, got {out!r}"
    return serde.decode(out.value, "DeadLetter")


# --- valid inputs -----------------------------------------------------------------------------


def test_raw_source_ref() -> None:
    raw = Raw("t", 1, 2, None, None)
    assert raw.source == SourceRef("t", 1, 2)


def test_valid_form_decodes_to_a_hashed_form_submit(serde: AvroSerde, pipeline: Pipeline) -> None:
    out = pipeline.decode(_raw(serde, "FormSubmitted", make_form_record()), "FormSubmitted", NOW)

    assert isinstance(out, FormSubmit)
    assert out == make_form_submit()
    assert out.keys == MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA, META_PHONE_SHA)


def test_valid_booking_decodes_with_hashed_keys(serde: AvroSerde, pipeline: Pipeline) -> None:
    out = pipeline.decode(
        _raw(serde, "BookingCreated", make_booking_record()), "BookingCreated", NOW
    )

    assert isinstance(out, Booking)
    assert out.keys == MatchKeys(EMAIL_SHA, PHONE_SHA, None, META_PHONE_SHA)
    assert out.booking_id == "bk-1"
    assert out.currency == "GBP"
    assert out.scheduled_for == NOW + timedelta(days=10)


def test_valid_status_change_decodes_with_hashed_keys(serde: AvroSerde, pipeline: Pipeline) -> None:
    out = pipeline.decode(
        _raw(serde, "LeadStatusChanged", make_status_record()), "LeadStatusChanged", NOW
    )

    assert isinstance(out, StatusChange)
    assert out.change_id == "c-1"
    assert out.lead_id == LEAD_ID
    assert out.changed_at == NOW - timedelta(minutes=5)
    assert out.keys == MatchKeys(EMAIL_SHA, None)


# --- invalid inputs become dead letters -------------------------------------------------------


def test_missing_field_dead_letter_carries_source_and_reason(
    serde: AvroSerde, pipeline: Pipeline
) -> None:
    raw = _raw(serde, "FormSubmitted", make_form_record(lead_id="   "))

    out = pipeline.decode(raw, "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    assert isinstance(out, DeadLetterOut)
    assert out.key == LEAD_ID.encode()
    assert out.reason == "missing_field"
    assert "'lead_id'" in out.message
    assert letter["source_topic"] == TOPICS["FormSubmitted"]
    assert letter["source_partition"] == 2
    assert letter["source_offset"] == 4711
    assert letter["source_key"] == LEAD_ID.encode()
    assert letter["reason"] == "missing_field"
    assert letter["field"] == "lead_id"
    assert letter["message"] == out.message
    assert "lead_id" in letter["message"]
    assert letter["event_id"] is None
    assert letter["dead_lettered_at"] == NOW


def test_dead_letter_original_has_hashed_pii_only(serde: AvroSerde, pipeline: Pipeline) -> None:
    raw = _raw(serde, "FormSubmitted", make_form_record(lead_id=""))
    assert raw.value is not None
    assert all(pii in raw.value for pii in RAW_FORM_PII)  # the input does carry it

    out = pipeline.decode(raw, "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    original = serde.decode(letter["original"], "FormSubmitted")
    assert original["email"] == EMAIL_SHA
    assert original["phone"] == PHONE_SHA
    assert original["external_id"] == EXTERNAL_ID_SHA
    assert original == {
        **make_form_record(lead_id=""),
        "email": EMAIL_SHA,
        "phone": PHONE_SHA,
        "external_id": EXTERNAL_ID_SHA,
    }
    assert isinstance(out, DeadLetterOut)
    for pii in RAW_FORM_PII:
        assert pii not in out.value


@pytest.mark.parametrize(
    ("when", "detail"),
    [
        (datetime(1999, 12, 31, tzinfo=UTC), "before 2000-01-01"),
        (NOW + timedelta(days=2), "more than 1 day after now"),
    ],
)
def test_bad_timestamp_is_dead_lettered_naming_the_field(
    serde: AvroSerde, pipeline: Pipeline, when: datetime, detail: str
) -> None:
    raw = _raw(serde, "LeadStatusChanged", make_status_record(changed_at=when))

    letter = _dead_letter(serde, pipeline.decode(raw, "LeadStatusChanged", NOW))

    assert letter["reason"] == "invalid_timestamp"
    assert letter["field"] == "changed_at"
    assert "'changed_at'" in letter["message"]
    assert detail in letter["message"]
    original = serde.decode(letter["original"], "LeadStatusChanged")
    assert original["email"] == EMAIL_SHA
    assert original["changed_at"] == when
    assert EMAIL.encode() not in letter["original"]


def test_rejected_booking_scrubs_international_phone(serde: AvroSerde, pipeline: Pipeline) -> None:
    raw = _raw(serde, "BookingCreated", make_booking_record(currency="XYZ"), key=b"bk-1")

    out = pipeline.decode(raw, "BookingCreated", NOW)

    letter = _dead_letter(serde, out)
    assert letter["reason"] == "unknown_currency"
    assert letter["field"] == "currency"
    assert letter["source_key"] == b"bk-1"
    original = serde.decode(letter["original"], "BookingCreated")
    assert (original["email"], original["phone"]) == (EMAIL_SHA, PHONE_SHA)
    assert isinstance(out, DeadLetterOut)
    assert PHONE.encode() not in out.value


def test_unparsable_pii_is_still_not_kept_raw(serde: AvroSerde, pipeline: Pipeline) -> None:
    record = make_form_record(lead_id="", email="not an email", phone="call me", country=None)
    out = pipeline.decode(_raw(serde, "FormSubmitted", record), "FormSubmitted", NOW)

    original = serde.decode(_dead_letter(serde, out)["original"], "FormSubmitted")

    assert original["email"] == sha256_hex("not an email")
    assert original["phone"] == sha256_hex("call me")
    assert isinstance(out, DeadLetterOut)
    assert b"call me" not in out.value


def test_undecodable_bytes_keep_the_original(pipeline: Pipeline, serde: AvroSerde) -> None:
    raw = Raw(TOPICS["FormSubmitted"], 0, 9, b"k", b"\x01not avro")

    out = pipeline.decode(raw, "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    assert letter["reason"] == "undecodable"
    assert letter["original"] == b"\x01not avro"
    assert letter["field"] is None
    assert (letter["source_offset"], letter["source_key"]) == (9, b"k")


def test_tombstone_is_dead_lettered_with_empty_original(
    pipeline: Pipeline, serde: AvroSerde
) -> None:
    out = pipeline.decode(Raw(TOPICS["FormSubmitted"], 0, 1, None, None), "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    assert (letter["reason"], letter["original"], letter["source_key"]) == (
        "undecodable",
        b"",
        None,
    )


def test_unknown_schema_is_dead_lettered(pipeline: Pipeline, serde: AvroSerde) -> None:
    raw = Raw(TOPICS["FormSubmitted"], 0, 1, b"k", frame(424_242, b"\x02a"))
    assert _dead_letter(serde, pipeline.decode(raw, "FormSubmitted", NOW))["reason"] == (
        "unknown_schema"
    )


def _assert_no_raw_form_pii(out: Any) -> None:
    assert isinstance(out, DeadLetterOut)
    for pii in (*RAW_FORM_PII, PHONE.encode(), EXTERNAL_ID.encode()):
        assert pii not in out.value, pii


def test_wrong_record_is_schema_mismatch_with_its_pii_hashed(
    pipeline: Pipeline, serde: AvroSerde
) -> None:
    # A well-formed FormSubmitted produced onto the status topic, raw PII and all.
    raw = _raw(serde, "FormSubmitted", make_form_record(), topic=TOPICS["LeadStatusChanged"])
    assert all(pii in raw.value for pii in RAW_FORM_PII)  # the input does carry it

    out = pipeline.decode(raw, "LeadStatusChanged", NOW)

    letter = _dead_letter(serde, out)
    assert letter["reason"] == "schema_mismatch"
    assert "original kept as FormSubmitted with its PII hashed" in letter["message"]
    _assert_no_raw_form_pii(out)
    original = serde.decode(letter["original"], "FormSubmitted")  # read as what it is
    assert (original["email"], original["phone"], original["external_id"]) == (
        EMAIL_SHA,
        PHONE_SHA,
        EXTERNAL_ID_SHA,
    )
    assert original["lead_id"] == LEAD_ID  # what is not PII is kept for the operator


@pytest.mark.parametrize("record_name", ["BookingCreated", "LeadStatusChanged"])
def test_every_input_record_on_the_wrong_topic_is_scrubbed(
    pipeline: Pipeline, serde: AvroSerde, record_name: str
) -> None:
    record = {
        "BookingCreated": make_booking_record,
        "LeadStatusChanged": make_status_record,
    }[record_name](email="Raw.Person@Example.com", phone="+44 7700 900999")
    raw = _raw(serde, record_name, record, topic=TOPICS["FormSubmitted"])

    out = pipeline.decode(raw, "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    assert letter["reason"] == "schema_mismatch"
    assert isinstance(out, DeadLetterOut)
    assert b"Raw.Person" not in out.value
    assert b"7700 900999" not in out.value
    original = serde.decode(letter["original"], record_name)
    assert original["email"] == sha256_hex("raw.person@example.com")
    assert original["phone"] == hash_phone("+44 7700 900999", None)


def test_foreign_record_keeps_nothing_and_says_so(
    pipeline: Pipeline, serde: AvroSerde, registry: RegistryServer
) -> None:
    # A record Leadstream does not own: which of its fields hold PII is unknown.
    foreign = {
        "type": "record",
        "name": "Customer",
        "namespace": "com.example",
        "fields": [
            {"name": "lead_id", "type": "string"},
            {"name": "contact", "type": "string"},
        ],
    }
    schema_id = _client(registry.url).register_schema(
        "pipe.foreign-value", Schema(json.dumps(foreign), schema_type="AVRO")
    )
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf, fastavro.parse_schema(foreign), {"lead_id": "L1", "contact": "jane@example.com"}
    )
    raw = Raw(TOPICS["FormSubmitted"], 0, 7, b"L1", frame(schema_id, buf.getvalue()))

    out = pipeline.decode(raw, "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    assert letter["reason"] == "schema_mismatch"
    assert letter["original"] == b""
    assert "original dropped" in letter["message"]
    assert "com.example.Customer" in letter["message"]
    assert isinstance(out, DeadLetterOut)
    assert b"jane@example.com" not in out.value


def test_registry_outage_propagates_instead_of_dead_lettering() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serde = AvroSerde(_client(f"http://127.0.0.1:{port}"), SCHEMAS)
    pipeline = Pipeline(serde, DEAD_LETTER_TOPIC, TOPICS)
    raw = Raw(TOPICS["FormSubmitted"], 0, 1, b"k", frame(1, b"\x02a"))
    with pytest.raises(RegistryUnavailableError):
        pipeline.decode(raw, "FormSubmitted", NOW)


def test_registry_blip_while_scrubbing_never_leaks_raw_pii(registry: RegistryServer) -> None:
    client = FlakyClient({"url": registry.url, "max.retries": 0})
    serde = AvroSerde(client, SCHEMAS)
    pipeline = Pipeline(serde, DEAD_LETTER_TOPIC, TOPICS)
    serde.register(DEAD_LETTER_TOPIC, "DeadLetter")  # dead letters were written before
    writer = AvroSerde(_client(registry.url), SCHEMAS)
    raw = _raw(writer, "FormSubmitted", make_form_record(lead_id=""))
    client.fail_subjects.add(f"{TOPICS['FormSubmitted']}-value")

    # While the registry is down the scrubbed copy cannot be encoded: decoding blocks (the
    # caller retries) rather than dead-lettering the raw bytes.
    with pytest.raises(RegistryUnavailableError):
        pipeline.decode(raw, "FormSubmitted", NOW)

    client.fail_subjects.clear()  # the registry is back: the retry dead-letters, scrubbed
    out = pipeline.decode(raw, "FormSubmitted", NOW)

    letter = _dead_letter(serde, out)
    assert letter["reason"] == "missing_field"
    _assert_no_raw_form_pii(out)
    assert serde.decode(letter["original"], "FormSubmitted")["email"] == EMAIL_SHA


# --- scrub_pii --------------------------------------------------------------------------------


def test_scrub_pii_hashes_and_copies() -> None:
    record = {"email": EMAIL, "phone": "07700 900123", "country": "GB", "external_id": EXTERNAL_ID}
    out = scrub_pii(record)
    assert out == {
        "email": EMAIL_SHA,
        "phone": PHONE_SHA,
        "country": "GB",
        "external_id": EXTERNAL_ID_SHA,
    }
    assert record["email"] == EMAIL  # the input is not modified


def test_scrub_pii_keeps_hashes_and_other_fields() -> None:
    record = {"email": EMAIL_SHA.upper(), "phone": PHONE_SHA, "lead_id": LEAD_ID, "ip": "1.2.3.4"}
    assert scrub_pii(record) == {
        "email": EMAIL_SHA,
        "phone": PHONE_SHA,
        "lead_id": LEAD_ID,
        "ip": "1.2.3.4",
    }


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"email": None, "phone": None, "external_id": None},
        {"email": 42, "phone": b"07700 900123", "external_id": ["x"], "country": 7},
        {"email": "", "phone": "", "external_id": "", "country": ""},
        {"email": "   ", "phone": "   ", "external_id": "   "},
        {"email": "no-at-sign", "phone": "+", "country": "ZZ"},
        {"phone": "0" * 500, "country": "gb"},
        {"phone": "+44 (0) 7700-900-123 ext. 9", "country": None},
        {"email": "x@y", "phone": "\x00\x01\x7f", "external_id": "\n"},
        {"email": "é@ünïcode.example", "phone": "٠٧٧٠٠٩٠٠١٢٣", "country": "EG"},
    ],
)
def test_scrub_pii_never_raises_and_leaves_no_raw_string(record: dict[str, Any]) -> None:
    out = scrub_pii(record)
    assert set(out) == set(record)
    for name in ("email", "phone", "external_id"):
        value = record.get(name)
        if isinstance(value, str):
            scrubbed = out[name]
            assert scrubbed is None or (len(scrubbed) == 64 and scrubbed != value)
        elif name in record:
            assert out[name] is value  # non-strings are left alone


def test_scrub_pii_never_raises_on_lone_surrogates() -> None:
    out = scrub_pii({"email": "a@\ud800", "phone": "\ud800", "external_id": "\ud800"})
    assert set(out) == {"email", "phone", "external_id"}


# --- encode_input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "record_name"),
    [
        (make_form_submit(), "FormSubmitted"),
        (make_booking(scheduled_for=NOW + timedelta(days=3)), "BookingCreated"),
        (make_status_change(), "LeadStatusChanged"),
    ],
)
def test_encode_input_round_trips_hashed(
    serde: AvroSerde, pipeline: Pipeline, item: Any, record_name: str
) -> None:
    data = pipeline.encode_input(item)

    record = serde.decode(data, record_name)
    assert record["email"] == item.keys.email_sha256
    assert record["phone"] == item.keys.phone_sha256
    raw = Raw(TOPICS[record_name], 0, 0, None, data)
    # One phone field: the TikTok hash travels, the Meta form is recovered from the lead's form
    # (MatchKeys.fill), so the record read back has none of its own.
    keys = replace(item.keys, phone_digits_sha256=None)
    assert pipeline.decode(raw, record_name, NOW) == replace(item, keys=keys)
    assert EMAIL.encode() not in data


def test_encode_input_uses_the_input_topic_subject(
    serde: AvroSerde, pipeline: Pipeline, registry: RegistryServer
) -> None:
    data = pipeline.encode_input(make_form_submit())
    latest = _client(registry.url).get_latest_version(f"{TOPICS['FormSubmitted']}-value")
    assert int.from_bytes(data[1:5], "big") == latest.schema_id
    form = make_form_submit()
    expected = replace(form, keys=replace(form.keys, phone_digits_sha256=None))
    assert form_from_record(serde.decode(data, "FormSubmitted"), NOW) == expected


def test_from_settings_uses_the_configured_topics_of_the_contract(
    serde: AvroSerde, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSTREAM_TOPIC_BOOKING_CREATED", "pipe.settings.bookings")
    monkeypatch.setenv("LEADSTREAM_TOPIC_DEAD_LETTER", "pipe.settings.dlq")
    pipeline = Pipeline.from_settings(serde, Settings())

    data = pipeline.encode_input(make_booking())
    dead = pipeline.dead_letter(Raw("t", 0, 1, None, b"x"), "undecodable", "m", None, b"x", NOW)

    client = _client(registry.url)
    assert pipeline.dead_letter_topic == "pipe.settings.dlq"
    bookings = client.get_latest_version("pipe.settings.bookings-value")
    assert int.from_bytes(data[1:5], "big") == bookings.schema_id
    dlq = client.get_latest_version("pipe.settings.dlq-value")
    assert int.from_bytes(dead.value[1:5], "big") == dlq.schema_id


def test_own_conversions_are_delivered_without_decoding(
    serde: AvroSerde, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "RECENT_CONVERSIONS", 2)
    pipe = Pipeline(serde, DEAD_LETTER_TOPIC, TOPICS)
    decoded: list[bytes | None] = []
    decode = serde.decode
    monkeypatch.setattr(
        serde, "decode", lambda value, name: decoded.append(value) or decode(value, name)
    )
    topic = "pipe.leadstream.conversions"
    convs = [
        make_conversion(event_id=f"e-{n}", created_at=NOW + timedelta(microseconds=1234))
        for n in range(3)
    ]
    values = [pipe.encode_conversion(topic, conv) for conv in convs]
    foreign = serde.encode(topic, "Conversion", conversion_to_record(convs[0]))

    # The last two are remembered, as they decode (created_at in whole milliseconds).
    assert [pipe.decode_conversion(v) for v in values[1:]] == [as_decoded(c) for c in convs[1:]]
    assert decoded == []
    # The oldest was dropped, and bytes this pipeline did not write are decoded as before.
    assert pipe.decode_conversion(values[0]) == as_decoded(convs[0])
    assert pipe.decode_conversion(foreign) == as_decoded(convs[0])
    assert decoded == [values[0], foreign]
    with pytest.raises(SerdeError):
        pipe.decode_conversion(None)


def test_the_edge_clock_reads_whole_milliseconds() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    now = pipeline_module.utcnow()
    assert now.microsecond % 1000 == 0 and now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
