"""The lead table's value: a lead's state as compact JSON, and back.

Compact and exact: short keys, None / False / UNKNOWN omitted, datetimes as epoch milliseconds,
SHA-256 hex keys as 43-character unpadded base64url, and ledger / seen ids that contain the
form's event id stored as [prefix, suffix, millis] around it (they mostly do). Datetimes have
millisecond precision, like Avro; the core never stores finer ones. The layout is what the
changelog holds: change it only with a reader for the old one.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter
from types import MappingProxyType
from typing import Any

import orjson

from streams.domain.times import from_millis, to_millis
from streams.domain.types import (
    Booking,
    ClickContext,
    Consent,
    LeadContext,
    LeadState,
    MatchKeys,
    Pending,
    SourceRef,
    StatusChange,
)

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
        ("d", keys.phone_digits_sha256),
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
    return MatchKeys(
        _dec_hash(data, "e"), _dec_hash(data, "p"), _dec_hash(data, "x"), _dec_hash(data, "d")
    )


_ENCODE: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "str": lambda v: v,
        "float": lambda v: v,
        "time": lambda v: None if v is None else to_millis(v),
        "keys": _enc_keys,
        "consent": lambda v: None if v == Consent.UNKNOWN else v.value[0],
        "bool": lambda v: 1 if v else None,
    }
)
_DECODE: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "str": str,
        "float": float,
        "time": from_millis,
        "keys": _dec_keys,
        "consent": _CONSENT_CODES.__getitem__,
        "bool": bool,
    }
)

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
    ("click.fbc", "fc", "str"),
    ("click.fbp", "fp", "str"),
    ("click.meta_lead_id", "ml", "str"),
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
    ("click.fbc", "fc", "str"),
    ("click.fbp", "fp", "str"),
    ("click.meta_lead_id", "ml", "str"),
)


_Writers = tuple[tuple[Callable[[Any], Any], str, Callable[[Any], Any]], ...]
_Readers = tuple[tuple[str, bool, str, Callable[[Any], Any]], ...]  # key, in click, name, decode


def _compile(fields: _Fields) -> tuple[_Writers, _Readers]:
    """Resolve each field's getter and converters once, not per call: this runs per input."""
    writers = tuple((attrgetter(attr), key, _ENCODE[kind]) for attr, key, kind in fields)
    readers = tuple(
        (key, "." in attr, attr.rpartition(".")[2], _DECODE[kind]) for attr, key, kind in fields
    )
    return writers, readers


def _encode(obj: object, fields: _Writers) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for get, key, encode in fields:
        encoded = encode(get(obj))
        if encoded is not None:
            out[key] = encoded
    return out


def _decode(data: Mapping[str, Any], fields: _Readers) -> dict[str, Any]:
    out: dict[str, Any] = {}
    click: dict[str, Any] = {}
    for key, in_click, name, decode in fields:
        if key in data:
            (click if in_click else out)[name] = decode(data[key])
    if click:
        out["click"] = ClickContext(**click)
    return out


_CONTEXT_WRITE, _CONTEXT_READ = _compile(_CONTEXT_FIELDS)
_STATUS_WRITE, _STATUS_READ = _compile(_STATUS_FIELDS)
_BOOKING_WRITE, _BOOKING_READ = _compile(_BOOKING_FIELDS)


def _enc_time(at: datetime, base: int | None) -> int:
    """Milliseconds, written as ``-(base - ms)`` (0 or less) when not after ``base``: shorter.

    States written before this stored only absolute times, all positive, so the sign tells the
    two apart and both decode.
    """
    ms = to_millis(at)
    return ms - base if base is not None and ms <= base else ms


def _dec_time(value: int, base: int | None) -> datetime:
    return from_millis(value + base if base is not None and value <= 0 else value)


def _enc_times(
    times: Mapping[str, datetime], anchor: str | None, base: int | None
) -> tuple[dict[str, int], list[list[Any]]]:
    plain: dict[str, int] = {}
    around: list[list[Any]] = []
    for key, at in times.items():
        ms = _enc_time(at, base)
        if anchor and anchor in key:
            prefix, _, suffix = key.partition(anchor)
            around.append([prefix, suffix, ms])
        else:
            plain[key] = ms
    return plain, around


def _dec_times(
    plain: Mapping[str, int], around: list[list[Any]], anchor: str | None, base: int | None
) -> dict[str, datetime]:
    times = {key: _dec_time(ms, base) for key, ms in plain.items()}
    for prefix, suffix, ms in around:
        times[f"{prefix}{anchor}{suffix}"] = _dec_time(ms, base)
    return times


def _enc_pending(p: Pending) -> dict[str, Any]:
    out: dict[str, Any]
    if isinstance(p.item, StatusChange):
        out = {"s": _encode(p.item, _STATUS_WRITE)}
    else:
        out = {"b": _encode(p.item, _BOOKING_WRITE)}
    out["q"] = [p.source.topic, p.source.partition, p.source.offset]
    out["r"] = to_millis(p.received_at)
    return out


def _dec_pending(data: Mapping[str, Any]) -> Pending:
    item: StatusChange | Booking
    if "s" in data:
        item = StatusChange(**_decode(data["s"], _STATUS_READ))
    else:
        item = Booking(**_decode(data["b"], _BOOKING_READ))
    topic, partition, offset = data["q"]
    return Pending(item, SourceRef(topic, partition, offset), from_millis(data["r"]))


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
        ctx = _encode(state.context, _CONTEXT_WRITE)
        if ctx["l"] == state.lead_id:
            del ctx["l"]
        out["c"] = ctx
    base = to_millis(state.updated_at) if state.updated_at is not None else None
    for short, times in (("s", state.sent), ("n", state.seen)):
        plain, around = _enc_times(times, anchor, base)
        if plain:
            out[short] = plain
        if around:
            out[short.upper()] = around
    if state.pending:
        out["p"] = [_enc_pending(p) for p in state.pending]
    if state.updated_at is not None:
        out["u"] = to_millis(state.updated_at)
    return orjson.dumps(out)


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
        obj = orjson.loads(data)
        lead_id = obj["l"]
        context = None
        if "c" in obj:
            missing = [key for key in _CONTEXT_REQUIRED if key not in obj["c"]]
            if missing:
                raise KeyError(missing[0])
            values = _decode(obj["c"], _CONTEXT_READ)
            values.setdefault("lead_id", lead_id)
            context = LeadContext(**values)
        anchor = context.event_id if context is not None else None
        base = obj.get("u")
        return LeadState(
            lead_id=lead_id,
            context=context,
            sent=_dec_times(obj.get("s", {}), obj.get("S", []), anchor, base),
            seen=_dec_times(obj.get("n", {}), obj.get("N", []), anchor, base),
            pending=tuple(_dec_pending(p) for p in obj.get("p", [])),
            updated_at=from_millis(obj["u"]) if "u" in obj else None,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        msg = f"not a stored lead state: {exc!r}"
        raise ValueError(msg) from exc
