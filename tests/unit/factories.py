"""Factories for domain tests: valid defaults, override what the test is about."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from streams.domain.intake import booking_from_record, form_from_record, status_from_record
from streams.domain.matchkeys import sha256_hex
from streams.domain.types import (
    Booking,
    Channel,
    ClickContext,
    Consent,
    Conversion,
    FormSubmit,
    LeadContext,
    LeadState,
    MatchKeys,
    Pending,
    Rules,
    SourceKind,
    SourceRef,
    StatusChange,
)

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
CLICK_AT = NOW - timedelta(hours=2)

EMAIL = "jane.doe@example.com"
EMAIL_SHA = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
PHONE = "+447700900123"
PHONE_SHA = "a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436"
EXTERNAL_ID = "crm-user-42"
EXTERNAL_ID_SHA = sha256_hex(EXTERNAL_ID)
META_PHONE_SHA = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"
"""The phone hashed as Meta wants it: digits without '+' (meta-capi.md test vector)."""
FBC = "fb.1.1741953600123.IwAR2exampleClickId"
FBP = "fb.1.1741953600123.1234567890"
META_LEAD_ID = "525645896321548"

FORM_EVENT_ID = "f1d2c3b4-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
LEAD_ID = "lead-000123"
PAGE_URL = "https://example.com/landing/offer?utm_source=tiktok&utm_campaign=spring"
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
TTCLID = "E_C_P_CqgBx7rM3m5ZQd0x4fN2Lk9yW1uTj8sQp6vHa3eRb0cGi5oUn2lKf7dXz4wYt9qJe1gSh6mVr"
TTP = "2Qz0R1pYBcHs5XKGk1Wnq2Y9Lr1"
IP = "203.0.113.42"
TIKTOK_LEAD_ID = "7312345678901234567"

SOURCE = SourceRef("crm.lead-status-changed", 0, 41)
BOOKING_SOURCE = SourceRef("leads.booking-created", 1, 7)


def make_form_record(**overrides: Any) -> dict[str, Any]:
    """A valid FormSubmitted record dict (raw PII, as the website backend sends it)."""
    rec: dict[str, Any] = {
        "event_id": FORM_EVENT_ID,
        "lead_id": LEAD_ID,
        "occurred_at": CLICK_AT,
        "page_url": PAGE_URL,
        "form_id": "contact-us",
        "referrer_url": "https://www.tiktok.com/",
        "ttclid": TTCLID,
        "ttp": TTP,
        "tiktok_lead_id": None,
        "email": "  Jane.Doe@Example.com ",
        "phone": "07700 900123",
        "external_id": f" {EXTERNAL_ID} ",
        "ip": IP,
        "user_agent": USER_AGENT,
        "country": "gb",
        "ad_consent": "GRANTED",
        "limited_data_use": False,
        "locale": "en-GB",
        "fbc": FBC,
        "fbp": FBP,
        "meta_lead_id": None,
    }
    rec.update(overrides)
    return rec


def make_booking_record(**overrides: Any) -> dict[str, Any]:
    """A valid BookingCreated record dict."""
    rec: dict[str, Any] = {
        "booking_id": "bk-1",
        "event_id": "pixel-schedule-1",
        "occurred_at": NOW - timedelta(minutes=30),
        "lead_id": LEAD_ID,
        "email": EMAIL,
        "phone": PHONE,
        "value": 50.0,
        "currency": "gbp",
        "page_url": "https://example.com/book",
        "ip": "198.51.100.7",
        "user_agent": "BookingAgent/1.0",
        "ttclid": None,
        "ttp": None,
        "scheduled_for": NOW + timedelta(days=10),
        "fbc": None,
        "fbp": None,
        "meta_lead_id": None,
    }
    rec.update(overrides)
    return rec


def make_status_record(**overrides: Any) -> dict[str, Any]:
    """A valid LeadStatusChanged record dict."""
    rec: dict[str, Any] = {
        "change_id": "c-1",
        "lead_id": LEAD_ID,
        "status": "Qualified",
        "changed_at": NOW - timedelta(minutes=5),
        "crm": "hubspot",
        "previous_status": "new",
        "value": None,
        "currency": None,
        "order_id": None,
        "email": EMAIL,
        "phone": None,
    }
    rec.update(overrides)
    return rec


SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_FILES = {
    "FormSubmitted": "form_submitted.avsc",
    "BookingCreated": "booking_created.avsc",
    "LeadStatusChanged": "lead_status_changed.avsc",
    "Conversion": "conversion.avsc",
}
RAW_PII = ("Jane.Doe", "jane.doe@example.com", "07700 900123", "+447700900123", "crm-user-42")
"""Raw PII of the record factories, which must never reach a message, a record or the table."""

Parser = Callable[[Mapping[str, Any], datetime], Any]
PARSERS: dict[str, tuple[Parser, Callable[..., dict[str, Any]]]] = {
    "FormSubmitted": (form_from_record, make_form_record),
    "BookingCreated": (booking_from_record, make_booking_record),
    "LeadStatusChanged": (status_from_record, make_status_record),
}
"""Each input record's intake function and record factory."""


def record_schema(record: str) -> dict[str, Any]:
    """A record's parsed ``.avsc``."""
    schema: dict[str, Any] = json.loads((SCHEMAS / SCHEMA_FILES[record]).read_text())
    return schema


def schema_fields(record: str) -> list[str]:
    """The field names of a record's ``.avsc``, in schema order."""
    return [f["name"] for f in record_schema(record)["fields"]]


FULL_KEYS = MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA, META_PHONE_SHA)
FORM_CLICK = ClickContext(
    page_url=PAGE_URL,
    referrer_url="https://www.tiktok.com/",
    ttclid=TTCLID,
    ttp=TTP,
    ip=IP,
    user_agent=USER_AGENT,
    ad_consent=Consent.GRANTED,
    locale="en-GB",
    fbc=FBC,
    fbp=FBP,
)
"""The click of the default form submit."""

_CLICK_FIELDS = frozenset(f.name for f in fields(ClickContext))


_Clicked = TypeVar("_Clicked", FormSubmit, Booking, LeadContext, Conversion)


def _with(obj: _Clicked, overrides: dict[str, Any]) -> _Clicked:
    """Replace fields of ``obj``; a click field (``page_url=None``) is replaced in its click."""
    click = {k: overrides.pop(k) for k in list(overrides) if k in _CLICK_FIELDS}
    if click:
        overrides["click"] = replace(overrides.get("click", obj.click), **click)
    return replace(obj, **overrides)


def make_form_submit(**overrides: Any) -> FormSubmit:
    """A validated form submit with every optional field set."""
    form = FormSubmit(
        event_id=FORM_EVENT_ID,
        lead_id=LEAD_ID,
        occurred_at=CLICK_AT,
        keys=FULL_KEYS,
        form_id="contact-us",
        country="GB",
        click=FORM_CLICK,
    )
    return _with(form, overrides)


def make_status_change(**overrides: Any) -> StatusChange:
    """A validated status change that maps to ApplicationApproval (web) or QualifiedLead (CRM)."""
    change = StatusChange(
        change_id="c-1",
        lead_id=LEAD_ID,
        status="qualified",
        changed_at=NOW - timedelta(minutes=5),
        crm="hubspot",
        previous_status="new",
    )
    return replace(change, **overrides)


def make_purchase(**overrides: Any) -> StatusChange:
    """A validated won status change with value and currency."""
    return make_status_change(
        **{"change_id": "c-won", "status": "won", "value": 1200.0, "currency": "EUR", **overrides}
    )


def make_booking(**overrides: Any) -> Booking:
    """A validated booking resolved to LEAD_ID."""
    booking = Booking(
        booking_id="bk-1",
        event_id="pixel-schedule-1",
        occurred_at=NOW - timedelta(minutes=30),
        lead_id=LEAD_ID,
        keys=MatchKeys(EMAIL_SHA, PHONE_SHA, None, META_PHONE_SHA),
        value=50.0,
        currency="GBP",
        click=ClickContext(
            page_url="https://example.com/book", ip="198.51.100.7", user_agent="BookingAgent/1.0"
        ),
    )
    return _with(booking, overrides)


def make_context(**overrides: Any) -> LeadContext:
    """The click context the default form submit produces."""
    ctx = LeadContext(
        lead_id=LEAD_ID,
        event_id=FORM_EVENT_ID,
        occurred_at=CLICK_AT,
        keys=FULL_KEYS,
        click=FORM_CLICK,
    )
    return _with(ctx, overrides)


def make_rules(**overrides: Any) -> Rules:
    """The default rules."""
    return replace(Rules(), **overrides)


def make_state(**overrides: Any) -> LeadState:
    """A typical stored lead: full context, two ledger entries, two seen ids."""
    state = LeadState(
        lead_id=LEAD_ID,
        context=make_context(),
        sent={
            f"{FORM_EVENT_ID}:QualifiedLead": NOW - timedelta(hours=1),
            "order-77:Purchase": NOW - timedelta(minutes=10),
        },
        seen={
            f"f:{FORM_EVENT_ID}": CLICK_AT,
            "s:6b1f8e2a-3c4d-4e5f-9a0b-1c2d3e4f5a6b": NOW - timedelta(hours=1),
        },
        updated_at=NOW - timedelta(minutes=10),
    )
    return replace(state, **overrides)


def make_pending(item: StatusChange | Booking, received_at: datetime = NOW) -> Pending:
    """A waiting input."""
    source = BOOKING_SOURCE if isinstance(item, Booking) else SOURCE
    return Pending(item, source, received_at)


def make_conversion(**overrides: Any) -> Conversion:
    """A matched web QualifiedLead conversion."""
    conv = Conversion(
        event_id=f"{FORM_EVENT_ID}:QualifiedLead",
        event="QualifiedLead",
        event_time=NOW - timedelta(minutes=5),
        lead_id=LEAD_ID,
        source_kind=SourceKind.STATUS_CHANGE,
        source_id="c-1",
        channel=Channel.WEB,
        matched=True,
        created_at=NOW,
        keys=FULL_KEYS,
        click=replace(FORM_CLICK, locale=None),
        crm="hubspot",
    )
    return _with(conv, overrides)


def make_full_click() -> ClickContext:
    """A click with every field away from its default, whatever fields ClickContext has."""
    values: dict[str, Any] = {}
    for f in fields(ClickContext):
        if isinstance(f.default, Consent):
            values[f.name] = Consent.DENIED
        elif isinstance(f.default, bool):
            values[f.name] = True
        else:
            values[f.name] = f"{f.name}-value"
    return ClickContext(**values)
