"""Intake: validate a FormSubmitted, BookingCreated or LeadStatusChanged record, hash its keys.

Each record is read field by field in the order of its spec below; the first invalid field
rejects the record with a reason and a message naming it. Unusable match keys, an invalid IP, a
country that is not two letters and a malformed locale are dropped instead: they only weaken
matching.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NoReturn

from streams.domain.currencies import is_currency
from streams.domain.fbc import click_fbc
from streams.domain.matchkeys import match_keys
from streams.domain.times import EPOCH, from_millis, iso, truncate_ms
from streams.domain.types import (
    CLICK_FIELDS,
    Booking,
    ClickContext,
    Consent,
    FormSubmit,
    Rejection,
    StatusChange,
)
from streams.domain.urls import CONTROL, query_param

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""Timestamps before this are rejected: zero, or seconds where milliseconds were expected."""
MAX_AHEAD = timedelta(days=1)
"""Event timestamps more than this after ``now`` are rejected (clock skew allowance)."""

MAX_CHARS: Mapping[str, int] = MappingProxyType(
    {
        "event_id": 256,
        "lead_id": 256,
        "change_id": 256,
        "booking_id": 256,
        "order_id": 256,
        "form_id": 256,
        "tiktok_lead_id": 256,
        "status": 128,
        "previous_status": 128,
        "crm": 128,
        "page_url": 4096,
        "referrer_url": 4096,
        "user_agent": 1024,
        "locale": 35,
        "ttclid": 512,
        "ttp": 512,
        "fbc": 1024,
        "fbp": 256,
        "meta_lead_id": 64,
        "ip": 64,
        "email": 320,
        "phone": 320,
        "external_id": 320,
    }
)
"""Longest accepted value, in characters after trimming, of every free-text string field.

``currency`` and ``country`` are not listed: their content is checked exactly instead.
"""

ID_FIELDS: frozenset[str] = frozenset(
    {
        "event_id",
        "lead_id",
        "change_id",
        "booking_id",
        "order_id",
        "form_id",
        "tiktok_lead_id",
        "ttclid",
        "ttp",
        "fbc",
        "fbp",
        "meta_lead_id",
    }
)
"""Identifier fields: control characters in them reject the record (``invalid_field``)."""

PII_FIELDS: frozenset[str] = frozenset({"email", "phone", "external_id"})
"""Fields whose raw value must never appear in a message."""

_LABEL_MAX = 64


_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")

_Spec = tuple[tuple[str, str], ...]  # (record field, the _Reader method that reads it)

_FORM: _Spec = (
    ("event_id", "required"),
    ("lead_id", "required"),
    ("occurred_at", "required_timestamp"),
    ("page_url", "required"),
    ("form_id", "text"),
    ("referrer_url", "text"),
    ("ttclid", "text"),
    ("ttp", "text"),
    ("tiktok_lead_id", "text"),
    ("email", "text"),
    ("phone", "text"),
    ("external_id", "text"),
    ("ip", "ip"),
    ("user_agent", "text"),
    ("country", "country"),
    ("locale", "locale"),
    ("ad_consent", "consent"),
    ("limited_data_use", "flag"),
    ("fbc", "text"),
    ("fbp", "text"),
    ("meta_lead_id", "text"),
)
_BOOKING: _Spec = (
    ("booking_id", "required"),
    ("event_id", "required"),
    ("occurred_at", "required_timestamp"),
    ("lead_id", "text"),
    ("email", "text"),
    ("phone", "text"),
    ("value", "value"),
    ("currency", "currency"),
    ("page_url", "text"),
    ("ip", "ip"),
    ("user_agent", "text"),
    ("ttclid", "text"),
    ("ttp", "text"),
    ("scheduled_for", "future_timestamp"),
    ("fbc", "text"),
    ("fbp", "text"),
    ("meta_lead_id", "text"),
)
_STATUS: _Spec = (
    ("change_id", "required"),
    ("lead_id", "required"),
    ("status", "required"),
    ("changed_at", "required_timestamp"),
    ("crm", "required"),
    ("previous_status", "text"),
    ("value", "value"),
    ("currency", "currency"),
    ("order_id", "text"),
    ("email", "text"),
    ("phone", "text"),
)


class _Invalid(Exception):
    """Internal control flow of the readers: carries the rejection to the public function."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def _label(rec: Mapping[str, Any], record_name: str, id_field: str) -> str:
    value = rec.get(id_field)
    shown = "?"
    text = value.strip() if isinstance(value, str) else ""
    if text and len(text) <= MAX_CHARS[id_field] and not CONTROL.search(text):
        shown = text
        if len(shown) > _LABEL_MAX:
            shown = shown[:_LABEL_MAX] + "..."
    return f"{record_name} {id_field}={shown}"


class _Reader:
    """Reads and validates the fields of one record; raises :class:`_Invalid` on the first error."""

    __slots__ = ("_label", "_now", "_rec")

    def __init__(self, rec: Mapping[str, Any], record_name: str, id_field: str, now: datetime):
        self._rec = rec
        self._label = _label(rec, record_name, id_field)
        self._now = now

    def fail(self, reason: str, name: str, detail: str) -> NoReturn:
        raise _Invalid(Rejection(reason, f"{self._label}: field '{name}' {detail}", name))

    def _string(self, name: str) -> str | None:
        value = self._rec.get(name)
        if value is not None and not isinstance(value, str):
            self.fail("invalid_field", name, f"must be a string, not {type(value).__name__}")
        return value

    def text(self, name: str) -> str | None:
        value = self._string(name)
        if value is None:
            return None
        text = value.strip()
        if not text:
            return None
        limit = MAX_CHARS.get(name)
        if limit is not None and len(text) > limit:
            self.fail(
                "oversize_field", name, f"is {len(text)} characters, longer than the limit {limit}"
            )
        if name in ID_FIELDS and CONTROL.search(text):
            self.fail("invalid_field", name, "contains control characters")
        return text

    def required(self, name: str) -> str:
        text = self.text(name)
        if text is None:
            blank = self._rec.get(name) is not None
            self.fail("missing_field", name, "is blank" if blank else "is missing")
        return text

    def timestamp(self, name: str, *, may_be_future: bool = False) -> datetime | None:
        value = self._rec.get(name)
        if value is None:
            return None
        if isinstance(value, datetime) and value.utcoffset() is None:
            self.fail("invalid_timestamp", name, f"is {value.isoformat()}, without timezone")
        if isinstance(value, bool) or not isinstance(value, int | datetime):
            self.fail(
                "invalid_field",
                name,
                f"must be a timestamp (datetime or epoch milliseconds), not {type(value).__name__}",
            )
        try:
            dt = truncate_ms(
                from_millis(value) if isinstance(value, int) else value.astimezone(UTC)
            )
        except OverflowError:
            self.fail("invalid_timestamp", name, f"is {value!r}, out of range")
        if dt < EARLIEST:
            hint = " (milliseconds given as seconds?)" if dt.year == EPOCH.year else ""
            self.fail("invalid_timestamp", name, f"is {iso(dt)}, before 2000-01-01{hint}")
        if not may_be_future and dt > self._now + MAX_AHEAD:
            self.fail(
                "invalid_timestamp",
                name,
                f"is {iso(dt)}, more than 1 day after now ({iso(self._now)})",
            )
        return dt

    def required_timestamp(self, name: str) -> datetime:
        dt = self.timestamp(name)
        if dt is None:
            self.fail("missing_field", name, "is missing")
        return dt

    def future_timestamp(self, name: str) -> datetime | None:
        """Read a timestamp that may lie in the future (still after 2000-01-01)."""
        return self.timestamp(name, may_be_future=True)

    def read(self, spec: _Spec) -> dict[str, Any]:
        """Read the fields of ``spec`` in its order; the first invalid one raises."""
        return {name: getattr(self, how)(name) for name, how in spec}

    def value(self, name: str) -> float | None:
        value = self._rec.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail("invalid_field", name, f"must be a number, not {type(value).__name__}")
        try:
            number = float(value)
        except OverflowError:
            self.fail("invalid_value", name, "is too large")
        if not math.isfinite(number):
            self.fail("invalid_value", name, f"is {number!r}, not a finite number")
        if number < 0:
            self.fail("invalid_value", name, f"is {number!r}, negative")
        return number

    def currency(self, name: str) -> str | None:
        value = self._string(name)
        if value is None:
            return None
        code = value.strip().upper()
        if not code:
            return None
        if not is_currency(code):
            self.fail(
                "unknown_currency",
                name,
                f"is {code[:16]!r}, not an ISO 4217 currency TikTok accepts (README, Currencies)",
            )
        return code

    def locale(self, name: str) -> str | None:
        """Read a BCP 47 language tag (``en-GB``, ``pt_BR``); drop a malformed one, never reject."""
        text = self.text(name)
        if text is None or _LOCALE.fullmatch(text) is None:
            return None
        return text

    def consent(self, name: str) -> Consent:
        value = self._string(name)
        if value is None:
            return Consent.UNKNOWN
        try:
            return Consent(value.strip().upper())
        except ValueError:
            self.fail("invalid_field", name, f"is {value[:16]!r}, not GRANTED, DENIED or UNKNOWN")

    def flag(self, name: str) -> bool:
        value = self._rec.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.fail("invalid_field", name, f"must be a boolean, not {type(value).__name__}")
        return value

    def ip(self, name: str) -> str | None:
        text = self.text(name)
        if text is None:
            return None
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return None  # a bad IP only weakens matching: drop it, keep the record

    def country(self, name: str) -> str | None:
        value = self._string(name)
        if value is None:
            return None
        code = value.strip().upper()
        if len(code) == 2 and code.isascii() and code.isalpha():
            return code
        return None  # only the phone's default region: drop it, keep the record


def ttclid_from_url(url: str | None) -> str | None:
    """Return the landing page URL's ``ttclid``, as Segment's action does.

    TikTok appends ``ttclid`` to the ad's landing page; when the form did not capture it, the
    page URL still carries it (see :func:`streams.domain.urls.query_param`).
    """
    return query_param(url, "ttclid", MAX_CHARS["ttclid"])


def _read(
    rec: Mapping[str, Any], record_name: str, id_field: str, spec: _Spec, now: datetime
) -> dict[str, Any] | Rejection:
    try:
        return _Reader(rec, record_name, id_field, now).read(spec)
    except _Invalid as invalid:
        return invalid.rejection


def _hash_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Replace the raw match keys among ``values`` by ``keys``, hashed (country: the phone's)."""
    raw = {name: values.pop(name, None) for name in ("email", "phone", "external_id")}
    values["keys"] = match_keys(**raw, country=values.get("country"))
    return values


def _with_click(values: dict[str, Any]) -> dict[str, Any]:
    """Gather the click fields among ``values`` into ``click``."""
    click = {name: values.pop(name) for name in CLICK_FIELDS if name in values}
    values["click"] = ClickContext(**click)
    return values


def form_from_record(rec: Mapping[str, Any], now: datetime) -> FormSubmit | Rejection:
    """Validate a ``FormSubmitted`` record and hash its match keys.

    The ``ttclid`` is the form's, else the one in ``page_url``; so is Meta's ``fbc``, built
    from the URL's ``fbclid`` as ``fb.1.<submit time in ms>.<fbclid>`` when the form has none.

    Args:
        rec: The decoded Avro record (timestamps as aware datetimes or epoch milliseconds).
        now: The current time, for the "not in the future" check.

    Returns:
        The form submit, or the rejection of the first invalid field. An unparsable phone or
        email, an invalid IP and a country that is not two letters are dropped, not rejected.

    """
    values = _read(rec, "FormSubmitted", "event_id", _FORM, now)
    if isinstance(values, Rejection):
        return values
    values["ttclid"] = values["ttclid"] or ttclid_from_url(values["page_url"])
    values["fbc"] = click_fbc(values["fbc"], values["page_url"], values["occurred_at"])
    return FormSubmit(**_with_click(_hash_keys(values)))


def booking_from_record(rec: Mapping[str, Any], now: datetime) -> Booking | Rejection:
    """Validate a ``BookingCreated`` record and hash its match keys.

    Bookings carry no country, so a phone parses only in international format (``+`` or ``00``).
    ``scheduled_for`` may lie in the future; it must still be after 2000-01-01.

    Args:
        rec: The decoded Avro record.
        now: The current time, for the "not in the future" check of ``occurred_at``.

    Returns:
        The booking, or the rejection of the first invalid field.

    """
    values = _read(rec, "BookingCreated", "booking_id", _BOOKING, now)
    if isinstance(values, Rejection):
        return values
    values["fbc"] = click_fbc(values["fbc"], values["page_url"], values["occurred_at"])
    return Booking(**_with_click(_hash_keys(values)))


def status_from_record(rec: Mapping[str, Any], now: datetime) -> StatusChange | Rejection:
    """Validate a ``LeadStatusChanged`` record and hash its match keys.

    Args:
        rec: The decoded Avro record.
        now: The current time, for the "not in the future" check.

    Returns:
        The status change, or the rejection of the first invalid field.

    """
    values = _read(rec, "LeadStatusChanged", "change_id", _STATUS, now)
    if isinstance(values, Rejection):
        return values
    return StatusChange(**_hash_keys(values))
