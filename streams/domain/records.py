"""Avro mapping: domain objects to and from the dicts of their Avro records (``schemas/``).

Validated inputs go back out with hashed keys (for dead letters and internal topics);
conversions go out to and come back from the conversions topic. Validating what comes in from
outside is :mod:`streams.domain.intake`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from streams.domain.times import from_millis, truncate_ms
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

BOOKING_CLICK_FIELDS: tuple[str, ...] = (
    "page_url",
    "ip",
    "user_agent",
    "ttclid",
    "ttp",
    "fbc",
    "fbp",
    "meta_lead_id",
)
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
        A dict with exactly the fields of the item's input schema: the item's own fields by
        name, its hashed keys as ``email``, ``phone`` (and ``external_id`` for a form) and the
        fields of its click the record carries.

    """
    rec = {f.name: getattr(item, f.name) for f in fields(item) if f.name not in ("keys", "click")}
    rec["email"], rec["phone"] = item.keys.email_sha256, item.keys.phone_sha256
    if isinstance(item, FormSubmit):
        rec["external_id"] = item.keys.external_id_sha256
        rec.update(click_to_record(item.click))
    elif isinstance(item, Booking):
        rec.update(click_to_record(item.click, BOOKING_CLICK_FIELDS))
    return rec


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
        "status": c.status,
        "destination": c.destination,
        "phone_digits_sha256": c.keys.phone_digits_sha256,
        **click_to_record(c.click),
    }


def _as_datetime(value: datetime | int) -> datetime:
    if isinstance(value, datetime):
        return value
    return from_millis(value)


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
            rec.get("email_sha256"),
            rec.get("phone_sha256"),
            rec.get("external_id_sha256"),
            rec.get("phone_digits_sha256"),
        ),
        click=click_from_record(rec),
        crm=rec.get("crm"),
        value=None if value is None else float(value),
        currency=rec.get("currency"),
        order_id=rec.get("order_id"),
        status=rec.get("status"),
        destination=rec.get("destination"),
    )


def as_decoded(c: Conversion) -> Conversion:
    """Return ``c`` as its ``Conversion`` record decodes: times in whole milliseconds.

    ``timestamp-millis`` drops the microseconds below a millisecond; every other field of a
    conversion survives its record unchanged (a property test holds this against fastavro).
    """
    if c.event_time.microsecond % 1000 == 0 and c.created_at.microsecond % 1000 == 0:
        return c  # the usual case: input times and the edge's clock are whole milliseconds
    return replace(c, event_time=truncate_ms(c.event_time), created_at=truncate_ms(c.created_at))
