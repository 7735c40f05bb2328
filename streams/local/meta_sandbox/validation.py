"""Validation of Conversions API requests, written from the contract (meta-capi.md) alone.

Standalone on purpose: imports nothing from the Leadstream client or payload builder, so a rule
misread on both sides cannot pass the tests. Meta rejects the **whole** request when any event is
invalid, with HTTP 400 and the Graph error envelope (code ``100``), without saying which event;
:func:`validate_request` returns the first problem as an :class:`Invalid`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

MAX_EVENTS: Final = 1000
INVALID_PARAMETER: Final = 100
SUBCODE_INVALID: Final = 2804001
SUBCODE_TOO_OLD: Final = 2804003
SUBCODE_FUTURE: Final = 2804004

ACTION_SOURCES: Final = frozenset(
    {
        "website",
        "app",
        "email",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)
REQUEST_FIELDS: Final = frozenset(
    {
        "data",
        "test_event_code",
        "partner_agent",
        "namespace_id",
        "upload_id",
        "upload_tag",
        "upload_source",
        "access_token",
    }
)
EVENT_FIELDS: Final = frozenset(
    {
        "event_name",
        "event_time",
        "action_source",
        "event_id",
        "event_source_url",
        "referrer_url",
        "opt_out",
        "data_processing_options",
        "data_processing_options_country",
        "data_processing_options_state",
        "user_data",
        "custom_data",
        "app_data",
        "original_event_data",
        "attribution_data",
        "messaging_channel",
    }
)
HASHED_FIELDS: Final = frozenset(
    {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"}
)
PLAIN_FIELDS: Final = frozenset(
    {
        "client_ip_address",
        "client_user_agent",
        "fbc",
        "fbp",
        "lead_id",
        "subscription_id",
        "fb_login_id",
        "anon_id",
        "madid",
        "page_id",
        "ctwa_clid",
    }
)
CUSTOM_FIELDS: Final = frozenset(
    {
        "value",
        "currency",
        "content_ids",
        "contents",
        "content_type",
        "order_id",
        "num_items",
        "predicted_ltv",
        "status",
        "search_string",
        "delivery_category",
        "custom_properties",
        "event_source",
        "lead_event_source",
        "content_name",
        "content_category",
    }
)
# Match keys: one of these, or IP together with user agent, must be present.
STRONG_KEYS: Final = frozenset({"em", "ph", "external_id", "fbc", "fbp", "lead_id", "madid"})

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_LEAD_ID: Final = re.compile(r"\d{15,17}")
_FBC: Final = re.compile(r"fb\.\d\.\d{10,13}\.\S+")
_FBP: Final = re.compile(r"fb\.\d\.\d{10,13}\.\d+")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
# Known phone test vector: the same number hashed *with* '+' is TikTok's form, wrong for Meta.
PHONE_WITH_PLUS_HASHES: Final = frozenset(
    {hashlib.sha256(b"+447700900123").hexdigest(), hashlib.sha256(b"+12133734253").hexdigest()}
)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a request is rejected: the Graph error fields the sandbox answers with."""

    message: str
    user_title: str = "Invalid parameter"
    subcode: int = SUBCODE_INVALID
    code: int = INVALID_PARAMETER


@dataclass(frozen=True, slots=True)
class Window:
    """Accepted ``event_time`` range, Unix seconds."""

    earliest: int
    latest: int


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def validate_request(body: object) -> tuple[list[dict[str, Any]], str | None] | Invalid:
    """Check the request envelope; return ``(events, test_event_code)`` or the problem."""
    if not isinstance(body, dict):
        return Invalid("The request body must be a JSON object")
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        return Invalid(f"Unknown request parameter(s): {', '.join(unknown)}")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return Invalid("The parameter data is required and must be a non-empty array")
    if len(data) > MAX_EVENTS:
        return Invalid(f"Too many events in one request: {len(data)} > {MAX_EVENTS}")
    code = body.get("test_event_code")
    if code is not None and (not isinstance(code, str) or not code.strip()):
        return Invalid("test_event_code must be a non-empty string")
    if not all(isinstance(event, dict) for event in data):
        return Invalid("Every entry of data must be an object")
    return data, code


def validate_event(event: Mapping[str, Any], window: Window) -> Invalid | None:
    """Check one event against the contract; return the first problem or None."""
    unknown = sorted(set(event) - EVENT_FIELDS)
    if unknown:
        return Invalid(f"Unknown event parameter(s): {', '.join(unknown)}")
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        return Invalid("event_name is required and must be a non-empty string")
    when = event.get("event_time")
    if not isinstance(when, int) or isinstance(when, bool):
        return Invalid("event_time is required and must be an integer (Unix seconds)")
    if when < window.earliest:
        return Invalid(
            "event_time is more than 7 days in the past",
            "Event Timestamp Too Old",
            SUBCODE_TOO_OLD,
        )
    if when > window.latest:
        return Invalid("event_time is in the future", "Event Timestamp In Future", SUBCODE_FUTURE)
    source = event.get("action_source")
    if source not in ACTION_SOURCES:
        return Invalid(f"action_source must be one of {', '.join(sorted(ACTION_SOURCES))}")
    event_id = event.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or not event_id.strip()):
        return Invalid("event_id must be a non-empty string")
    for url_field in ("event_source_url", "referrer_url"):
        url = event.get(url_field)
        if url is not None and (not isinstance(url, str) or "://" not in url):
            return Invalid(f"{url_field} must be an absolute URL")
    if "opt_out" in event and not isinstance(event["opt_out"], bool):
        return Invalid("opt_out must be a boolean")
    user = event.get("user_data")
    if not isinstance(user, dict) or not user:
        return Invalid("user_data is required and must be an object")
    problem = _validate_user_data(user)
    if problem is not None:
        return problem
    if source == "website" and not (
        event.get("event_source_url") and user.get("client_user_agent")
    ):
        return Invalid("website events need event_source_url and user_data.client_user_agent")
    custom = event.get("custom_data")
    if custom is not None:
        if not isinstance(custom, dict):
            return Invalid("custom_data must be an object")
        problem = _validate_custom_data(name, custom)
        if problem is not None:
            return problem
    elif name == "Purchase":
        return Invalid("Purchase events need custom_data.value and custom_data.currency")
    problem = _validate_crm(source, user, custom)
    if problem is not None:
        return problem
    return _validate_ldu(event)


def _validate_user_data(user: Mapping[str, Any]) -> Invalid | None:
    unknown = sorted(set(user) - HASHED_FIELDS - PLAIN_FIELDS)
    if unknown:
        return Invalid(f"Unknown user_data parameter(s): {', '.join(unknown)}")
    for name in sorted(HASHED_FIELDS & set(user)):
        values = _strings(user[name])
        if values is None:
            return Invalid(f"user_data.{name} must be a string or a non-empty array of strings")
        if not all(_SHA256.fullmatch(v) for v in values):
            return Invalid(
                f"user_data.{name} must be hashed with SHA-256 (64 lowercase hex characters)",
                "Unhashed customer information",
            )
        if name == "ph" and any(v in PHONE_WITH_PLUS_HASHES for v in values):
            return Invalid(
                "user_data.ph was hashed with a leading '+'; hash the digits only",
                "Phone number format",
            )
    for name in sorted(PLAIN_FIELDS & set(user)):
        value = user[name]
        if name == "lead_id":
            if not (_is_int(value) or isinstance(value, str)) or not _LEAD_ID.fullmatch(str(value)):
                return Invalid("user_data.lead_id must be the 15-17 digit Meta lead id, unhashed")
            continue
        if not isinstance(value, str) or not value.strip():
            return Invalid(f"user_data.{name} must be a non-empty string")
        if _SHA256.fullmatch(value.lower()):
            return Invalid(f"user_data.{name} must not be hashed")
    fbc = user.get("fbc")
    if fbc is not None and not _FBC.fullmatch(fbc):
        return Invalid("user_data.fbc must look like fb.1.<creation time ms>.<fbclid>")
    fbp = user.get("fbp")
    if fbp is not None and not _FBP.fullmatch(fbp):
        return Invalid("user_data.fbp must look like fb.1.<creation time ms>.<random number>")
    ip = user.get("client_ip_address")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return Invalid("user_data.client_ip_address must be an IPv4 or IPv6 address")
    if not (STRONG_KEYS & set(user)) and not (
        "client_ip_address" in user and "client_user_agent" in user
    ):
        return Invalid(
            "user_data needs at least one customer information parameter",
            "Missing customer information",
        )
    return None


def _validate_custom_data(name: str, custom: Mapping[str, Any]) -> Invalid | None:
    unknown = sorted(set(custom) - CUSTOM_FIELDS)
    if unknown:
        return Invalid(f"Unknown custom_data parameter(s): {', '.join(unknown)}")
    value = custom.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return Invalid("custom_data.value must be a number")
    currency = custom.get("currency")
    if currency is not None and (
        not isinstance(currency, str) or not _CURRENCY.fullmatch(currency)
    ):
        return Invalid("custom_data.currency must be an ISO 4217 code in upper case")
    if name == "Purchase" and (value is None or currency is None):
        return Invalid("Purchase events need custom_data.value and custom_data.currency")
    return None


def _validate_crm(
    source: object,
    user: Mapping[str, Any],
    custom: Mapping[str, Any] | None,
) -> Invalid | None:
    crm = custom is not None and custom.get("event_source") is not None
    if not crm and "lead_id" not in user:
        return None
    if custom is None or custom.get("event_source") != "crm":
        return Invalid("An event with user_data.lead_id needs custom_data.event_source 'crm'")
    if source != "system_generated":
        return Invalid("CRM (Conversion Leads) events need action_source 'system_generated'")
    if "lead_id" not in user:
        return Invalid("CRM (Conversion Leads) events need user_data.lead_id")
    lead_source = custom.get("lead_event_source")
    if not isinstance(lead_source, str) or not lead_source.strip():
        return Invalid("CRM (Conversion Leads) events need custom_data.lead_event_source")
    return None


def _validate_ldu(event: Mapping[str, Any]) -> Invalid | None:
    options = event.get("data_processing_options")
    if options is None:
        return None
    if not isinstance(options, list) or not all(o == "LDU" for o in options):
        return Invalid("data_processing_options must be [] or ['LDU']")
    for name, allowed in (
        ("data_processing_options_country", (0, 1)),
        ("data_processing_options_state", (0, 1000)),
    ):
        value = event.get(name)
        if value is not None and (not options or not _is_int(value) or value not in allowed):
            return Invalid(f"{name} must be one of {allowed}, and only with ['LDU']")
    return None
