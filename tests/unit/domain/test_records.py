"""Avro mapping: validated inputs and conversions to and from their record dicts."""

from __future__ import annotations

import io
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.domain.intake import (
    form_from_record,
)
from streams.domain.records import (
    BOOKING_CLICK_FIELDS,
    as_decoded,
    conversion_from_record,
    conversion_to_record,
    to_record,
)
from streams.domain.types import (
    CLICK_FIELDS,
    Booking,
    Channel,
    ClickContext,
    Consent,
    Conversion,
    FormSubmit,
    MatchKeys,
    SourceKind,
    StatusChange,
)
from streams.serde.avro import load_schemas
from tests.unit.factories import (
    CLICK_AT,
    EMAIL_SHA,
    EXTERNAL_ID_SHA,
    NOW,
    PARSERS,
    PHONE_SHA,
    RAW_PII,
    make_booking,
    make_conversion,
    make_form_record,
    make_form_submit,
    make_full_click,
    make_purchase,
    schema_fields,
)

# --- records back out ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "item"),
    [
        ("FormSubmitted", make_form_submit(tiktok_lead_id="7312", ad_consent=Consent.DENIED)),
        ("BookingCreated", make_booking(scheduled_for=NOW + timedelta(days=3))),
        ("BookingCreated", Booking("b", "e", CLICK_AT)),
        ("LeadStatusChanged", make_purchase(order_id="o-1", keys=MatchKeys(EMAIL_SHA, PHONE_SHA))),
    ],
)
def test_to_record_round_trips_with_hashes(
    record: str, item: FormSubmit | Booking | StatusChange
) -> None:
    rec = to_record(item)
    assert sorted(rec) == sorted(schema_fields(record))  # Avro writes in schema order
    parse, _ = PARSERS[record]
    # The record has one phone field: the TikTok hash goes out, so the input read back has no
    # Meta (digits) form of the phone, as for any phone that arrives already hashed.
    keys = replace(item.keys, phone_digits_sha256=None)
    assert parse(rec, NOW) == replace(item, keys=keys)


def test_to_record_never_carries_raw_pii() -> None:
    for record, (parse, make) in PARSERS.items():
        item = parse(make(), NOW)
        rec = to_record(item)
        text = repr(rec)
        for raw in RAW_PII:
            assert raw not in text, (record, raw)
        assert rec["email"] == EMAIL_SHA
    form_rec = to_record(form_from_record(make_form_record(), NOW))  # type: ignore[arg-type]
    assert form_rec["phone"] == PHONE_SHA
    assert form_rec["external_id"] == EXTERNAL_ID_SHA
    assert form_rec["country"] == "GB"
    assert form_rec["ad_consent"] == "GRANTED"


def test_conversion_record_has_exactly_the_schema_fields() -> None:
    conv = make_conversion(value=10.0, currency="EUR", order_id="o-1", tiktok_lead_id="7")
    rec = conversion_to_record(conv)
    assert sorted(rec) == sorted(schema_fields("Conversion"))
    assert rec["email_sha256"] == EMAIL_SHA
    assert rec["channel"] == "WEB" and type(rec["channel"]) is str
    assert rec["source_kind"] == "status_change" and type(rec["source_kind"]) is str
    assert rec["ad_consent"] == "GRANTED" and type(rec["ad_consent"]) is str
    assert rec["event_time"] == conv.event_time
    assert conversion_from_record(rec) == conv


def test_conversion_from_record_accepts_millis_and_defaults() -> None:
    conv = make_conversion(
        channel=Channel.CRM,
        source_kind=SourceKind.BOOKING,
        ad_consent=Consent.UNKNOWN,
        keys=MatchKeys(),
        value=3.0,
    )
    rec = conversion_to_record(conv)
    rec["event_time"] = int(conv.event_time.timestamp() * 1000)
    rec["created_at"] = int(conv.created_at.timestamp() * 1000)
    rec["value"] = 3
    del rec["ad_consent"], rec["limited_data_use"]
    back = conversion_from_record(rec)
    assert back == conv
    assert back.event_time.tzinfo is UTC and isinstance(back.value, float)


def test_conversion_from_record_with_bad_enum_raises() -> None:
    rec = conversion_to_record(make_conversion())
    with pytest.raises(ValueError, match="'PIGEON'"):
        conversion_from_record({**rec, "channel": "PIGEON"})
    del rec["event_id"]
    with pytest.raises(KeyError):
        conversion_from_record(rec)


def test_conversion_record_carries_the_locale() -> None:
    conv = make_conversion(locale="fr-FR")
    assert conversion_from_record(conversion_to_record(conv)) == conv


def test_every_click_field_is_in_the_form_and_conversion_schemas() -> None:
    click = set(CLICK_FIELDS)
    assert click <= set(schema_fields("FormSubmitted"))
    assert click <= set(schema_fields("Conversion"))
    assert set(BOOKING_CLICK_FIELDS) == click & set(schema_fields("BookingCreated"))


def test_every_click_field_round_trips_through_the_conversion_record() -> None:
    conv = make_conversion(click=make_full_click())
    assert conversion_from_record(conversion_to_record(conv)) == conv


def test_a_meta_only_conversion_round_trips_with_its_destination() -> None:
    conv = make_conversion(destination="meta", event="Lead", event_id="evt-1:Lead")
    record = conversion_to_record(conv)
    assert record["destination"] == "meta"
    assert conversion_from_record(record) == conv
    assert conversion_from_record({**record, "destination": None}).destination is None


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # Avro strings are UTF-8
_OPTIONAL_TEXT = st.none() | _TEXT
_TIMES = st.datetimes(
    min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - bounds; timezones= makes them aware
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
_CLICKS = st.builds(
    ClickContext,
    **{f.name: _OPTIONAL_TEXT for f in fields(ClickContext) if f.type == "str | None"},
    ad_consent=st.sampled_from(Consent),
    limited_data_use=st.booleans(),
)
_KEYS = st.builds(MatchKeys, *[_OPTIONAL_TEXT] * len(fields(MatchKeys)))
_CONVERSIONS = st.builds(
    Conversion,
    event_id=_TEXT,
    event=_TEXT,
    event_time=_TIMES,
    lead_id=_TEXT,
    source_kind=st.sampled_from(SourceKind),
    source_id=_TEXT,
    channel=st.sampled_from(Channel),
    matched=st.booleans(),
    created_at=_TIMES,
    keys=_KEYS,
    click=_CLICKS,
    crm=_OPTIONAL_TEXT,
    value=st.none() | st.floats(allow_nan=False),
    currency=_OPTIONAL_TEXT,
    order_id=_OPTIONAL_TEXT,
    status=_OPTIONAL_TEXT,
    destination=_OPTIONAL_TEXT,
)
_CONVERSION_SCHEMA = fastavro.parse_schema(json.loads(load_schemas()["Conversion"]))


@given(conv=_CONVERSIONS)
def test_as_decoded_is_what_the_avro_record_decodes_to(conv: Conversion) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _CONVERSION_SCHEMA, conversion_to_record(conv))
    buf.seek(0)
    decoded = conversion_from_record(fastavro.schemaless_reader(buf, _CONVERSION_SCHEMA, None))
    assert as_decoded(conv) == decoded
