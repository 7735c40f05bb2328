"""Edge conversions: Avro-shaped record dicts to and from domain objects, and lead state JSON."""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

from streams.domain.currencies import is_currency
from streams.domain.matchkeys import hash_email, hash_external_id, hash_phone
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
    Rejection,
    SourceKind,
    SourceRef,
    StatusChange,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    }
)
"""Identifier fields: control characters in them reject the record (``invalid_field``)."""

PII_FIELDS: frozenset[str] = frozenset({"email", "phone", "external_id"})
"""Fields whose raw value must never appear in a message."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LABEL_MAX = 64


class _Invalid(Exception):
    """Internal control flow of the readers: carries the rejection to the public function."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def _iso(dt: datetime) -> str:
    spec = "seconds" if dt.microsecond == 0 else "milliseconds"
    return dt.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _to_millis(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(milliseconds=1)


def _from_millis(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _truncate_ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _label(rec: Mapping[str, Any], record_name: str, id_field: str) -> str:
    value = rec.get(id_field)
    shown = "?"
    text = value.strip() if isinstance(value, str) else ""
    if text and len(text) <= MAX_CHARS[id_field] and not _CONTROL.search(text):
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

    def text(self, name: str) -> str | None:
        value = self._rec.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail("invalid_field", name, f"must be a string, not {type(value).__name__}")
        text = value.strip()
        if not text:
            return None
        limit = MAX_CHARS.get(name)
        if limit is not None and len(text) > limit:
            self.fail(
                "oversize_field", name, f"is {len(text)} characters, longer than the limit {limit}"
            )
        if name in ID_FIELDS and _CONTROL.search(text):
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
            dt = _truncate_ms(
                _from_millis(value) if isinstance(value, int) else value.astimezone(UTC)
            )
        except OverflowError:
            self.fail("invalid_timestamp", name, f"is {value!r}, out of range")
        if dt < EARLIEST:
            hint = " (milliseconds given as seconds?)" if dt.year == EPOCH.year else ""
            self.fail("invalid_timestamp", name, f"is {_iso(dt)}, before 2000-01-01{hint}")
        if not may_be_future and dt > self._now + MAX_AHEAD:
            self.fail(
                "invalid_timestamp",
                name,
                f"is {_iso(dt)}, more than 1 day after now ({_iso(self._now)})",
            )
        return dt

    def required_timestamp(self, name: str) -> datetime:
        dt = self.timestamp(name)
        if dt is None:
            self.fail("missing_field", name, "is missing")
        return dt

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
        value = self._rec.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail("invalid_field", name, f"must be a string, not {type(value).__name__}")
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
        value = self._rec.get(name)
        if value is None:
            return Consent.UNKNOWN
        if not isinstance(value, str):
            self.fail("invalid_field", name, f"must be a string, not {type(value).__name__}")
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
        value = self._rec.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail("invalid_field", name, f"must be a string, not {type(value).__name__}")
        code = value.strip().upper()
        if len(code) == 2 and code.isascii() and code.isalpha():
            return code
        return None  # only the phone's default region: drop it, keep the record


def ttclid_from_url(url: str | None) -> str | None:
    """Return the ``ttclid`` query parameter of a landing page URL, as Segment's action does.

    TikTok appends ``ttclid`` to the ad's landing page; when the form did not capture it, the
    page URL still carries it. A value that is blank, longer than the ``ttclid`` limit or holds
    control characters is ignored (the form is not rejected for its URL).

    Args:
        url: The page URL, or None.

    Returns:
        The click id, or None.

    """
    if not url or "ttclid" not in url.lower():
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    for name, value in parse_qsl(query, keep_blank_values=False):
        if name.lower() == "ttclid":
            text = value.strip()
            if text and len(text) <= MAX_CHARS["ttclid"] and not _CONTROL.search(text):
                return text
    return None


def form_from_record(rec: Mapping[str, Any], now: datetime) -> FormSubmit | Rejection:
    """Validate a ``FormSubmitted`` record and hash its match keys.

    Args:
        rec: The decoded Avro record (timestamps as aware datetimes or epoch milliseconds).
        now: The current time, for the "not in the future" check.

    Returns:
        The form submit, or the rejection of the first invalid field. An unparsable phone or
        email, an invalid IP and a country that is not two letters are dropped, not rejected.

    """
    r = _Reader(rec, "FormSubmitted", "event_id", now)  # ttclid: the form's, else page_url's
    try:
        event_id = r.required("event_id")
        lead_id = r.required("lead_id")
        occurred_at = r.required_timestamp("occurred_at")
        page_url = r.required("page_url")
        form_id = r.text("form_id")
        referrer_url = r.text("referrer_url")
        ttclid = r.text("ttclid") or ttclid_from_url(page_url)
        ttp = r.text("ttp")
        tiktok_lead_id = r.text("tiktok_lead_id")
        email = r.text("email")
        phone = r.text("phone")
        external_id = r.text("external_id")
        ip = r.ip("ip")
        user_agent = r.text("user_agent")
        country = r.country("country")
        locale = r.locale("locale")
        ad_consent = r.consent("ad_consent")
        limited_data_use = r.flag("limited_data_use")
    except _Invalid as invalid:
        return invalid.rejection
    return FormSubmit(
        event_id=event_id,
        lead_id=lead_id,
        occurred_at=occurred_at,
        keys=MatchKeys(
            hash_email(email), hash_phone(phone, country), hash_external_id(external_id)
        ),
        form_id=form_id,
        country=country,
        click=ClickContext(
            page_url=page_url,
            referrer_url=referrer_url,
            ttclid=ttclid,
            ttp=ttp,
            tiktok_lead_id=tiktok_lead_id,
            ip=ip,
            user_agent=user_agent,
            ad_consent=ad_consent,
            limited_data_use=limited_data_use,
            locale=locale,
        ),
    )


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
    r = _Reader(rec, "BookingCreated", "booking_id", now)
    try:
        booking_id = r.required("booking_id")
        event_id = r.required("event_id")
        occurred_at = r.required_timestamp("occurred_at")
        lead_id = r.text("lead_id")
        email = r.text("email")
        phone = r.text("phone")
        value = r.value("value")
        currency = r.currency("currency")
        page_url = r.text("page_url")
        ip = r.ip("ip")
        user_agent = r.text("user_agent")
        ttclid = r.text("ttclid")
        ttp = r.text("ttp")
        scheduled_for = r.timestamp("scheduled_for", may_be_future=True)
    except _Invalid as invalid:
        return invalid.rejection
    return Booking(
        booking_id=booking_id,
        event_id=event_id,
        occurred_at=occurred_at,
        lead_id=lead_id,
        keys=MatchKeys(hash_email(email), hash_phone(phone, None)),
        value=value,
        currency=currency,
        click=ClickContext(page_url=page_url, ip=ip, user_agent=user_agent, ttclid=ttclid, ttp=ttp),
        scheduled_for=scheduled_for,
    )


def status_from_record(rec: Mapping[str, Any], now: datetime) -> StatusChange | Rejection:
    """Validate a ``LeadStatusChanged`` record and hash its match keys.

    Args:
        rec: The decoded Avro record.
        now: The current time, for the "not in the future" check.

    Returns:
        The status change, or the rejection of the first invalid field.

    """
    r = _Reader(rec, "LeadStatusChanged", "change_id", now)
    try:
        change_id = r.required("change_id")
        lead_id = r.required("lead_id")
        status = r.required("status")
        changed_at = r.required_timestamp("changed_at")
        crm = r.required("crm")
        previous_status = r.text("previous_status")
        value = r.value("value")
        currency = r.currency("currency")
        order_id = r.text("order_id")
        email = r.text("email")
        phone = r.text("phone")
    except _Invalid as invalid:
        return invalid.rejection
    return StatusChange(
        change_id=change_id,
        lead_id=lead_id,
        status=status,
        changed_at=changed_at,
        crm=crm,
        previous_status=previous_status,
        value=value,
        currency=currency,
        order_id=order_id,
        keys=MatchKeys(hash_email(email), hash_phone(phone, None)),
    )


CLICK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ClickContext))
"""The click fields, named as in the ``FormSubmitted`` and ``Conversion`` schemas."""
BOOKING_CLICK_FIELDS: tuple[str, ...] = ("page_url", "ip", "user_agent", "ttclid", "ttp")
"""The click fields a ``BookingCreated`` record carries."""


def click_to_record(click: ClickContext, names: tuple[str, ...] = CLICK_FIELDS) -> dict[str, Any]:
    """Return the click's fields as Avro record fields, enums as their symbols.

    Args:
        click: The click context.
        names: The fields the record carries (default: all of them).

    Returns:
        A dict of the named fields.

    """
    return {
        name: value.value if isinstance(value, Consent) else value
        for name in names
        for value in (getattr(click, name),)
    }


def click_from_record(rec: Mapping[str, Any]) -> ClickContext:
    """Read the click fields of a trusted record; absent ones take the field's default.

    Args:
        rec: A decoded record holding the fields of :data:`CLICK_FIELDS`, or some of them.

    Returns:
        The click context.

    Raises:
        ValueError: ``ad_consent`` holds an unknown symbol.

    """
    values: dict[str, Any] = {}
    for f in fields(ClickContext):
        value = rec.get(f.name)
        if isinstance(f.default, Consent):
            value = Consent(value or f.default)
        elif isinstance(f.default, bool):
            value = bool(value)
        values[f.name] = value
    return ClickContext(**values)


def to_record(item: FormSubmit | Booking | StatusChange) -> dict[str, Any]:
    """Turn a validated input back into its Avro record, with hashed keys instead of raw PII.

    Used to dead-letter an input without raw email or phone; re-driving the record works because
    hashes pass through ingest unchanged.

    Args:
        item: The domain object.

    Returns:
        A dict with exactly the fields of the item's input schema.

    """
    keys = item.keys
    if isinstance(item, FormSubmit):
        return {
            "event_id": item.event_id,
            "lead_id": item.lead_id,
            "occurred_at": item.occurred_at,
            "form_id": item.form_id,
            "email": keys.email_sha256,
            "phone": keys.phone_sha256,
            "external_id": keys.external_id_sha256,
            "country": item.country,
            **click_to_record(item.click),
        }
    if isinstance(item, Booking):
        return {
            "booking_id": item.booking_id,
            "event_id": item.event_id,
            "occurred_at": item.occurred_at,
            "lead_id": item.lead_id,
            "email": keys.email_sha256,
            "phone": keys.phone_sha256,
            "value": item.value,
            "currency": item.currency,
            "scheduled_for": item.scheduled_for,
            **click_to_record(item.click, BOOKING_CLICK_FIELDS),
        }
    return {
        "change_id": item.change_id,
        "lead_id": item.lead_id,
        "status": item.status,
        "changed_at": item.changed_at,
        "crm": item.crm,
        "previous_status": item.previous_status,
        "value": item.value,
        "currency": item.currency,
        "order_id": item.order_id,
        "email": keys.email_sha256,
        "phone": keys.phone_sha256,
    }


def conversion_to_record(c: Conversion) -> dict[str, Any]:
    """Turn a conversion into its ``Conversion`` Avro record.

    Args:
        c: The conversion.

    Returns:
        A dict with exactly the fields of ``schemas/conversion.avsc``; enums as their string
        values, times as aware datetimes.

    """
    return {
        "event_id": c.event_id,
        "event": c.event,
        "event_time": c.event_time,
        "lead_id": c.lead_id,
        "source_kind": c.source_kind.value,
        "source_id": c.source_id,
        "channel": c.channel.value,
        "matched": c.matched,
        "email_sha256": c.keys.email_sha256,
        "phone_sha256": c.keys.phone_sha256,
        "external_id_sha256": c.keys.external_id_sha256,
        "crm": c.crm,
        "value": c.value,
        "currency": c.currency,
        "order_id": c.order_id,
        "created_at": c.created_at,
        **click_to_record(c.click),
    }


def _as_datetime(value: datetime | int) -> datetime:
    if isinstance(value, datetime):
        return value
    return _from_millis(value)


def conversion_from_record(rec: Mapping[str, Any]) -> Conversion:
    """Turn a decoded ``Conversion`` Avro record back into a conversion.

    The record comes from Leadstream's own topic, so it is trusted: a malformed one is a bug and
    raises instead of returning a rejection.

    Args:
        rec: The decoded record; times as aware datetimes or epoch milliseconds.

    Returns:
        The conversion.

    Raises:
        KeyError: A required field is absent.
        ValueError: An enum field holds an unknown symbol.

    """
    value = rec.get("value")
    return Conversion(
        event_id=rec["event_id"],
        event=rec["event"],
        event_time=_as_datetime(rec["event_time"]),
        lead_id=rec["lead_id"],
        source_kind=SourceKind(rec["source_kind"]),
        source_id=rec["source_id"],
        channel=Channel(rec["channel"]),
        matched=bool(rec["matched"]),
        created_at=_as_datetime(rec["created_at"]),
        keys=MatchKeys(
            rec.get("email_sha256"), rec.get("phone_sha256"), rec.get("external_id_sha256")
        ),
        click=click_from_record(rec),
        crm=rec.get("crm"),
        value=None if value is None else float(value),
        currency=rec.get("currency"),
        order_id=rec.get("order_id"),
    )


# --- lead state JSON ---------------------------------------------------------------------------
#
# Compact and exact: short keys, None / False / UNKNOWN omitted, datetimes as epoch milliseconds,
# SHA-256 hex keys as 43-character unpadded base64url, and ledger / seen ids that contain the
# form's event id stored as [prefix, suffix, millis] around it (they mostly do). Datetimes have
# millisecond precision, like Avro; the core never stores finer ones.

_HEX = re.compile(r"[0-9a-f]{64}")
_CONSENT_CODES: Mapping[str, Consent] = MappingProxyType({c.value[0]: c for c in Consent})


def _enc_hash(digest: str, short: str) -> tuple[str, str]:
    if _HEX.fullmatch(digest):
        return short, base64.urlsafe_b64encode(bytes.fromhex(digest)).decode("ascii").rstrip("=")
    return short.upper(), digest


def _enc_keys(keys: MatchKeys) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for short, digest in (
        ("e", keys.email_sha256),
        ("p", keys.phone_sha256),
        ("x", keys.external_id_sha256),
    ):
        if digest is not None:
            key, encoded = _enc_hash(digest, short)
            out[key] = encoded
    return out or None


def _dec_hash(data: Mapping[str, str], short: str) -> str | None:
    if short in data:
        return base64.urlsafe_b64decode(data[short] + "=").hex()
    return data.get(short.upper())


def _dec_keys(data: Mapping[str, str]) -> MatchKeys:
    return MatchKeys(_dec_hash(data, "e"), _dec_hash(data, "p"), _dec_hash(data, "x"))


_ENCODE: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "str": lambda v: v,
        "float": lambda v: v,
        "time": lambda v: None if v is None else _to_millis(v),
        "keys": _enc_keys,
        "consent": lambda v: None if v == Consent.UNKNOWN else v.value[0],
        "bool": lambda v: 1 if v else None,
    }
)
_DECODE: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "str": str,
        "float": float,
        "time": _from_millis,
        "keys": _dec_keys,
        "consent": _CONSENT_CODES.__getitem__,
        "bool": bool,
    }
)

_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")

_Fields = tuple[tuple[str, str, str], ...]  # (attribute, JSON key, kind); "click.x": click's x

_CONTEXT_FIELDS: _Fields = (
    ("lead_id", "l", "str"),
    ("event_id", "e", "str"),
    ("occurred_at", "t", "time"),
    ("click.page_url", "u", "str"),
    ("keys", "k", "keys"),
    ("click.referrer_url", "r", "str"),
    ("click.ttclid", "c", "str"),
    ("click.ttp", "p", "str"),
    ("click.tiktok_lead_id", "tl", "str"),
    ("click.ip", "i", "str"),
    ("click.user_agent", "a", "str"),
    ("click.ad_consent", "ac", "consent"),
    ("click.limited_data_use", "ld", "bool"),
    ("click.locale", "lo", "str"),
)
_CONTEXT_REQUIRED = ("e", "t", "u")  # a stored context always has its form's id, time and page
_STATUS_FIELDS: _Fields = (
    ("change_id", "i", "str"),
    ("lead_id", "l", "str"),
    ("status", "st", "str"),
    ("changed_at", "t", "time"),
    ("crm", "cr", "str"),
    ("previous_status", "ps", "str"),
    ("value", "v", "float"),
    ("currency", "cu", "str"),
    ("order_id", "o", "str"),
    ("keys", "k", "keys"),
)
_BOOKING_FIELDS: _Fields = (
    ("booking_id", "i", "str"),
    ("event_id", "e", "str"),
    ("occurred_at", "t", "time"),
    ("lead_id", "l", "str"),
    ("keys", "k", "keys"),
    ("value", "v", "float"),
    ("currency", "cu", "str"),
    ("click.page_url", "u", "str"),
    ("click.ip", "ip", "str"),
    ("click.user_agent", "a", "str"),
    ("click.ttclid", "c", "str"),
    ("click.ttp", "p", "str"),
    ("scheduled_for", "sf", "time"),
)


def _encode(obj: object, fields: _Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, key, kind in fields:
        encoded = _ENCODE[kind](attrgetter(attr)(obj))
        if encoded is not None:
            out[key] = encoded
    return out


def _decode(data: Mapping[str, Any], fields: _Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    click: dict[str, Any] = {}
    for attr, key, kind in fields:
        if key in data:
            _, dot, name = attr.rpartition(".")
            (click if dot else out)[name] = _DECODE[kind](data[key])
    if click:
        out["click"] = ClickContext(**click)
    return out


def _enc_times(
    times: Mapping[str, datetime], anchor: str | None
) -> tuple[dict[str, int], list[list[Any]]]:
    plain: dict[str, int] = {}
    around: list[list[Any]] = []
    for key, at in times.items():
        ms = _to_millis(at)
        if anchor and anchor in key:
            prefix, _, suffix = key.partition(anchor)
            around.append([prefix, suffix, ms])
        else:
            plain[key] = ms
    return plain, around


def _dec_times(
    plain: Mapping[str, int], around: list[list[Any]], anchor: str | None
) -> dict[str, datetime]:
    times = {key: _from_millis(ms) for key, ms in plain.items()}
    for prefix, suffix, ms in around:
        times[f"{prefix}{anchor}{suffix}"] = _from_millis(ms)
    return times


def _enc_pending(p: Pending) -> dict[str, Any]:
    out: dict[str, Any]
    if isinstance(p.item, StatusChange):
        out = {"s": _encode(p.item, _STATUS_FIELDS)}
    else:
        out = {"b": _encode(p.item, _BOOKING_FIELDS)}
    out["q"] = [p.source.topic, p.source.partition, p.source.offset]
    out["r"] = _to_millis(p.received_at)
    return out


def _dec_pending(data: Mapping[str, Any]) -> Pending:
    item: StatusChange | Booking
    if "s" in data:
        item = StatusChange(**_decode(data["s"], _STATUS_FIELDS))
    else:
        item = Booking(**_decode(data["b"], _BOOKING_FIELDS))
    topic, partition, offset = data["q"]
    return Pending(item, SourceRef(topic, partition, offset), _from_millis(data["r"]))


def lead_state_to_json(state: LeadState) -> bytes:
    """Encode a lead's state for the Faust table, compactly.

    A typical lead (full click context, two ledger entries, two seen ids) takes well under 1 KiB.

    Args:
        state: The state to store.

    Returns:
        UTF-8 JSON bytes; :func:`lead_state_from_json` restores an equal state (times with
        millisecond precision).

    """
    anchor = state.context.event_id if state.context is not None else None
    out: dict[str, Any] = {"l": state.lead_id}
    if state.context is not None:
        ctx = _encode(state.context, _CONTEXT_FIELDS)
        if ctx["l"] == state.lead_id:
            del ctx["l"]
        out["c"] = ctx
    for short, times in (("s", state.sent), ("n", state.seen)):
        plain, around = _enc_times(times, anchor)
        if plain:
            out[short] = plain
        if around:
            out[short.upper()] = around
    if state.pending:
        out["p"] = [_enc_pending(p) for p in state.pending]
    if state.updated_at is not None:
        out["u"] = _to_millis(state.updated_at)
    return json.dumps(out, separators=(",", ":")).encode("utf-8")


def lead_state_from_json(data: bytes) -> LeadState:
    """Decode a lead's state written by :func:`lead_state_to_json`.

    Args:
        data: The stored bytes.

    Returns:
        The state.

    Raises:
        ValueError: The bytes are not a stored lead state.

    """
    try:
        obj = json.loads(data)
        lead_id = obj["l"]
        context = None
        if "c" in obj:
            missing = [key for key in _CONTEXT_REQUIRED if key not in obj["c"]]
            if missing:
                raise KeyError(missing[0])
            values = _decode(obj["c"], _CONTEXT_FIELDS)
            values.setdefault("lead_id", lead_id)
            context = LeadContext(**values)
        anchor = context.event_id if context is not None else None
        return LeadState(
            lead_id=lead_id,
            context=context,
            sent=_dec_times(obj.get("s", {}), obj.get("S", []), anchor),
            seen=_dec_times(obj.get("n", {}), obj.get("N", []), anchor),
            pending=tuple(_dec_pending(p) for p in obj.get("p", [])),
            updated_at=_from_millis(obj["u"]) if "u" in obj else None,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        msg = f"not a stored lead state: {exc!r}"
        raise ValueError(msg) from exc
