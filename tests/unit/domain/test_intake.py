"""Intake: validation, normalisation and hashing of the input records."""

from __future__ import annotations

import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from streams.domain.intake import (
    MAX_CHARS,
    booking_from_record,
    form_from_record,
    status_from_record,
)
from streams.domain.types import (
    Booking,
    ClickContext,
    Consent,
    FormSubmit,
    MatchKeys,
    Rejection,
    StatusChange,
)
from tests.unit.factories import (
    CLICK_AT,
    EMAIL_SHA,
    EXTERNAL_ID_SHA,
    FORM_EVENT_ID,
    LEAD_ID,
    NOW,
    PARSERS,
    PHONE_SHA,
    RAW_PII,
    TIKTOK_LEAD_ID,
    make_booking,
    make_booking_record,
    make_form_record,
    make_form_submit,
    make_status_change,
    make_status_record,
    record_schema,
)


def reject(record: str, **overrides: Any) -> Rejection:
    parse, make = PARSERS[record]
    result = parse(make(**overrides), NOW)
    assert isinstance(result, Rejection), result
    for raw in RAW_PII:
        assert raw not in result.message
    return result


# --- valid records ------------------------------------------------------------------------------


def test_form_is_validated_normalised_and_hashed() -> None:
    form = form_from_record(make_form_record(ip=" 2001:DB8:0:0:0:0:0:1 "), NOW)
    assert form == make_form_submit(ip="2001:db8::1")


def test_booking_is_validated_normalised_and_hashed() -> None:
    booking = booking_from_record(make_booking_record(), NOW)
    assert booking == make_booking(scheduled_for=NOW + timedelta(days=10))


def test_status_change_is_validated_and_hashed() -> None:
    change = status_from_record(make_status_record(currency=" eur ", value=3), NOW)
    assert change == make_status_change(
        status="Qualified", keys=MatchKeys(EMAIL_SHA), value=3.0, currency="EUR"
    )
    assert isinstance(change, StatusChange) and isinstance(change.value, float)
    change = status_from_record(make_status_record(currency="  "), NOW)
    assert isinstance(change, StatusChange) and change.currency is None


def test_optional_fields_may_be_absent() -> None:
    required = {
        k: make_form_record()[k] for k in ("event_id", "lead_id", "occurred_at", "page_url")
    }
    form = form_from_record(required, NOW)
    click = ClickContext(page_url=make_form_record()["page_url"])
    assert form == FormSubmit(FORM_EVENT_ID, LEAD_ID, CLICK_AT, click=click)
    minimal = {"booking_id": "b", "event_id": "e", "occurred_at": CLICK_AT}
    assert booking_from_record(minimal, NOW) == Booking("b", "e", CLICK_AT)


def test_blank_optional_strings_become_none() -> None:
    form = form_from_record(make_form_record(form_id="  ", email="", ttclid="\t"), NOW)
    assert isinstance(form, FormSubmit)
    assert form.form_id is None and form.click.ttclid is None and form.keys.email_sha256 is None


def test_timestamps_as_epoch_millis_are_accepted() -> None:
    ms = int(CLICK_AT.timestamp() * 1000) + 123
    form = form_from_record(make_form_record(occurred_at=ms), NOW)
    assert isinstance(form, FormSubmit)
    assert form.occurred_at == CLICK_AT + timedelta(milliseconds=123)
    assert form.occurred_at.tzinfo is UTC


def test_timestamps_in_other_zones_become_utc_millis() -> None:
    cet = timezone(timedelta(hours=1))
    at = datetime(2025, 3, 14, 11, 0, 0, 123456, tzinfo=cet)
    change = status_from_record(make_status_record(changed_at=at), NOW)
    assert isinstance(change, StatusChange)
    assert change.changed_at == datetime(2025, 3, 14, 10, 0, 0, 123000, tzinfo=UTC)
    assert change.changed_at.utcoffset() == timedelta(0)


def test_scheduled_for_may_be_in_the_future() -> None:
    booking = booking_from_record(make_booking_record(scheduled_for=NOW + timedelta(days=400)), NOW)
    assert isinstance(booking, Booking)


def test_consent_and_flag_defaults_and_case() -> None:
    form = form_from_record(make_form_record(ad_consent=None, limited_data_use=None), NOW)
    assert isinstance(form, FormSubmit)
    assert form.click.ad_consent is Consent.UNKNOWN and form.click.limited_data_use is False
    form = form_from_record(make_form_record(ad_consent=" denied", limited_data_use=True), NOW)
    assert isinstance(form, FormSubmit)
    assert form.click.ad_consent is Consent.DENIED and form.click.limited_data_use is True


def test_unusable_keys_ip_and_country_are_dropped_not_rejected() -> None:
    form = form_from_record(
        make_form_record(email="nobody", phone="call me", ip="300.1.1.1", country="GBR"), NOW
    )
    assert isinstance(form, FormSubmit)
    assert form.keys == MatchKeys(None, None, EXTERNAL_ID_SHA)
    assert form.click.ip is None and form.country is None


def test_country_is_the_phone_region() -> None:
    form = form_from_record(make_form_record(country="us", phone="07700 900123"), NOW)
    assert isinstance(form, FormSubmit)
    assert form.country == "US" and form.keys.phone_sha256 is None
    form = form_from_record(make_form_record(country=None, phone="+44 7700 900123"), NOW)
    assert isinstance(form, FormSubmit) and form.keys.phone_sha256 == PHONE_SHA


@pytest.mark.parametrize(
    ("phone", "expected"), [("07700 900123", None), ("+447700900123", PHONE_SHA)]
)
def test_booking_and_status_phones_parse_without_region(phone: str, expected: str | None) -> None:
    booking = booking_from_record(make_booking_record(phone=phone), NOW)
    change = status_from_record(make_status_record(phone=phone), NOW)
    assert isinstance(booking, Booking) and isinstance(change, StatusChange)
    assert booking.keys.phone_sha256 == expected
    assert change.keys.phone_sha256 == expected


def test_prehashed_keys_pass_through() -> None:
    form = form_from_record(
        make_form_record(email=EMAIL_SHA.upper(), phone=PHONE_SHA, external_id=EXTERNAL_ID_SHA),
        NOW,
    )
    assert isinstance(form, FormSubmit)
    assert form.keys == MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA)


def test_value_zero_is_valid_at_the_edge() -> None:
    booking = booking_from_record(make_booking_record(value=0), NOW)
    assert isinstance(booking, Booking) and booking.value == 0.0


# --- rejections ---------------------------------------------------------------------------------

REQUIRED = [
    ("FormSubmitted", "event_id"),
    ("FormSubmitted", "lead_id"),
    ("FormSubmitted", "occurred_at"),
    ("FormSubmitted", "page_url"),
    ("BookingCreated", "booking_id"),
    ("BookingCreated", "event_id"),
    ("BookingCreated", "occurred_at"),
    ("LeadStatusChanged", "change_id"),
    ("LeadStatusChanged", "lead_id"),
    ("LeadStatusChanged", "status"),
    ("LeadStatusChanged", "changed_at"),
    ("LeadStatusChanged", "crm"),
]


@pytest.mark.parametrize(("record", "name"), REQUIRED)
def test_missing_required_field(record: str, name: str) -> None:
    parse, make = PARSERS[record]
    absent = make()
    del absent[name]
    for rec in (absent, make(**{name: None})):
        result = parse(rec, NOW)
        assert result == Rejection("missing_field", result.message, name)
        assert f"field '{name}' is missing" in result.message
        assert result.message.startswith(f"{record} ")


@pytest.mark.parametrize(("record", "name"), [(r, n) for r, n in REQUIRED if not n.endswith("_at")])
def test_blank_required_string_is_missing(record: str, name: str) -> None:
    result = reject(record, **{name: "  \t "})
    assert (result.reason, result.field) == ("missing_field", name)
    assert "is blank" in result.message


def test_message_names_record_field_and_likely_cause() -> None:
    result = reject("LeadStatusChanged", changed_at=1000)
    assert result == Rejection(
        "invalid_timestamp",
        "LeadStatusChanged change_id=c-1: field 'changed_at' is 1970-01-01T00:00:01Z, "
        "before 2000-01-01 (milliseconds given as seconds?)",
        "changed_at",
    )


@pytest.mark.parametrize(
    ("record", "name", "value", "detail"),
    [
        ("FormSubmitted", "occurred_at", 0, "1970-01-01T00:00:00Z, before 2000-01-01 (milli"),
        ("FormSubmitted", "occurred_at", 1_741_953_600, "(milliseconds given as seconds?)"),
        ("BookingCreated", "occurred_at", datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "31"),
        ("BookingCreated", "scheduled_for", -1, "1969-12-31T23:59:59.999Z, before 2000"),
        ("LeadStatusChanged", "changed_at", NOW + timedelta(days=1, seconds=1), "after now"),
        ("LeadStatusChanged", "changed_at", datetime(2025, 3, 14, 12), "without timezone"),  # noqa: DTZ001 - the naive datetime is the point
        ("LeadStatusChanged", "changed_at", 10**20, "out of range"),
        (
            "FormSubmitted",
            "occurred_at",
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
            "",
        ),
    ],
)
def test_invalid_timestamps(record: str, name: str, value: Any, detail: str) -> None:
    result = reject(record, **{name: value})
    assert (result.reason, result.field) == ("invalid_timestamp", name)
    assert detail in result.message


def test_before_2000_without_epoch_hint_when_not_near_1970() -> None:
    result = reject("FormSubmitted", occurred_at=datetime(1999, 1, 1, tzinfo=UTC))
    assert result.message.endswith("is 1999-01-01T00:00:00Z, before 2000-01-01")


def test_up_to_one_day_ahead_is_accepted() -> None:
    change = status_from_record(make_status_record(changed_at=NOW + timedelta(days=1)), NOW)
    assert isinstance(change, StatusChange)


@pytest.mark.parametrize(
    ("record", "name", "value", "reason"),
    [
        ("BookingCreated", "value", -0.01, "invalid_value"),
        ("BookingCreated", "value", math.nan, "invalid_value"),
        ("LeadStatusChanged", "value", math.inf, "invalid_value"),
        ("LeadStatusChanged", "value", -math.inf, "invalid_value"),
        ("LeadStatusChanged", "value", 10**400, "invalid_value"),
        ("LeadStatusChanged", "value", "12.50", "invalid_field"),
        ("LeadStatusChanged", "value", True, "invalid_field"),
        ("BookingCreated", "currency", "EURO", "unknown_currency"),
        ("BookingCreated", "currency", "XXX", "unknown_currency"),
        ("LeadStatusChanged", "currency", "usd$", "unknown_currency"),
        ("LeadStatusChanged", "currency", 978, "invalid_field"),
        ("FormSubmitted", "ad_consent", "MAYBE", "invalid_field"),
        ("FormSubmitted", "ad_consent", 1, "invalid_field"),
        ("FormSubmitted", "limited_data_use", "yes", "invalid_field"),
        ("FormSubmitted", "country", 44, "invalid_field"),
        ("FormSubmitted", "occurred_at", "2025-03-14T10:00:00Z", "invalid_field"),
        ("FormSubmitted", "occurred_at", 1.7e12, "invalid_field"),
        ("FormSubmitted", "occurred_at", True, "invalid_field"),
        ("FormSubmitted", "page_url", 42, "invalid_field"),
        ("FormSubmitted", "email", ["jane.doe@example.com"], "invalid_field"),
        ("BookingCreated", "lead_id", b"lead", "invalid_field"),
    ],
)
def test_invalid_values_and_types(record: str, name: str, value: Any, reason: str) -> None:
    result = reject(record, **{name: value})
    assert (result.reason, result.field) == (reason, name)
    assert f"field '{name}'" in result.message


def test_unknown_currency_is_checked_even_without_value() -> None:
    result = reject("LeadStatusChanged", value=None, currency="ABC")
    assert result.reason == "unknown_currency"
    assert "'ABC'" in result.message


OVERSIZE = [
    (record, name) for record, (_, make) in PARSERS.items() for name in make() if name in MAX_CHARS
]


def test_every_string_field_has_a_limit() -> None:
    limited = {name for _, name in OVERSIZE}
    for record in PARSERS:
        schema = record_schema(record)
        for f in schema["fields"]:
            types = f["type"] if isinstance(f["type"], list) else [f["type"]]
            if "string" in types and f["name"] not in {"currency", "country"}:
                assert f["name"] in limited, f["name"]


@pytest.mark.parametrize(("record", "name"), OVERSIZE)
def test_oversize_fields(record: str, name: str) -> None:
    parse, make = PARSERS[record]
    limit = MAX_CHARS[name]
    at_limit = "1" * limit if name == "ip" else "a" * limit
    assert not isinstance(parse(make(**{name: at_limit}), NOW), Rejection)
    secret = "jane.doe@example.com" + "x" * limit
    result = reject(record, **{name: secret})
    assert (result.reason, result.field) == ("oversize_field", name)
    assert f"longer than the limit {limit}" in result.message
    assert "x" * 20 not in result.message


@pytest.mark.parametrize(
    ("record", "name"),
    [
        ("FormSubmitted", "event_id"),
        ("FormSubmitted", "lead_id"),
        ("FormSubmitted", "ttclid"),
        ("BookingCreated", "booking_id"),
        ("LeadStatusChanged", "change_id"),
        ("LeadStatusChanged", "order_id"),
    ],
)
def test_control_characters_in_ids(record: str, name: str) -> None:
    result = reject(record, **{name: "id\x00with\x1bnul"})
    assert (result.reason, result.field) == ("invalid_field", name)
    assert "control characters" in result.message
    assert "\x00" not in result.message


def test_control_characters_elsewhere_are_kept() -> None:
    form = form_from_record(make_form_record(user_agent="UA\x07bell"), NOW)
    assert isinstance(form, FormSubmit) and form.click.user_agent == "UA\x07bell"


def test_label_of_a_record_with_a_bad_or_long_id() -> None:
    assert reject("LeadStatusChanged", change_id=None).message.startswith(
        "LeadStatusChanged change_id=?: "
    )
    long_id = "c" * 200
    message = reject("LeadStatusChanged", change_id=long_id, crm=None).message
    assert message.startswith(f"LeadStatusChanged change_id={'c' * 64}...: field 'crm'")


def test_first_invalid_field_wins() -> None:
    result = reject("FormSubmitted", lead_id=None, page_url=None)
    assert result.field == "lead_id"


# --- ttclid from the landing page (issue 13 §4) -----------------------------------------------


@pytest.mark.parametrize(
    ("page_url", "ttclid"),
    [
        ("https://shop.example.com/quote?utm_source=tiktok&ttclid=E.C.P.fromUrl", "E.C.P.fromUrl"),
        ("https://shop.example.com/quote?TTCLID=E.C.P.upper#form", "E.C.P.upper"),
        ("https://shop.example.com/quote?ttclid=E.C.P.a%2Bb", "E.C.P.a+b"),
        ("https://shop.example.com/quote?ttclid=", None),
        ("https://shop.example.com/quote?xttclid=nope", None),
        ("https://shop.example.com/ttclid/quote", None),
        ("https://shop.example.com/quote?ttclid=" + "x" * 600, None),
    ],
)
def test_ttclid_comes_from_the_page_url_when_the_form_has_none(
    page_url: str, ttclid: str | None
) -> None:
    form = form_from_record(make_form_record(ttclid=None, page_url=page_url), NOW)
    assert isinstance(form, FormSubmit)
    assert form.click.ttclid == ttclid


def test_the_form_own_ttclid_wins_over_the_page_url() -> None:
    record = make_form_record(ttclid="E.C.P.form", page_url="https://x.example/?ttclid=E.C.P.url")
    form = form_from_record(record, NOW)
    assert isinstance(form, FormSubmit) and form.click.ttclid == "E.C.P.form"


@pytest.mark.parametrize(
    ("raw", "locale"),
    [("en-GB", "en-GB"), (" pt_BR ", "pt_BR"), ("de", "de"), ("en GB", None), ("12", None)],
)
def test_form_locale_is_kept_when_it_is_a_language_tag(raw: str, locale: str | None) -> None:
    form = form_from_record(make_form_record(locale=raw), NOW)
    assert isinstance(form, FormSubmit) and form.click.locale == locale


# --- every click field is read (issue 14: a new ClickContext field is declared once) ---------


def test_form_intake_reads_every_click_field() -> None:
    record = make_form_record(
        tiktok_lead_id=TIKTOK_LEAD_ID, limited_data_use=True, meta_lead_id="525645896321548"
    )
    form = form_from_record(record, NOW)
    assert isinstance(form, FormSubmit)
    unread = [f.name for f in fields(ClickContext) if getattr(form.click, f.name) == f.default]
    assert not unread, f"form_from_record leaves these click fields unread: {unread}"
