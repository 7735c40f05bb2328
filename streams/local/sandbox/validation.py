"""Pure validation rules of the Events API 2.0 contract, as enforced by the sandbox.

Nothing here does I/O or reads a clock: the time window is an argument. Every failure is a
`Rejection` naming the JSON path (e.g. ``data.3.properties.value``) and a reason.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

EVENT_SOURCES: Final = frozenset({"web", "app", "offline", "crm"})
MAX_EVENTS_PER_REQUEST: Final = 1000

CODE_PARAM_ERROR: Final = 40002
CODE_BATCH_SIZE: Final = 40061
CODE_PII_NOT_HASHED: Final = 40062

# 2100-01-01T00:00:00Z: anything later is taken for a millisecond (or bogus) timestamp.
MAX_PLAUSIBLE_SECONDS: Final = 4_102_444_800

HASHED_USER_FIELDS: Final = ("email", "phone", "external_id")
PLAIN_USER_FIELDS: Final = ("ttclid", "ttp", "ip", "user_agent", "locale")
# ``lead_id`` belongs in ``lead``, not ``user``, on crm events (research notes, 1.3).
CRM_FORBIDDEN_USER_FIELDS: Final = ("ttclid", "ttp", "ip", "user_agent", "lead_id")
CONTENT_TYPES: Final = frozenset({"product", "product_group"})

# The currencies TikTok accepts (its Business SDK's list; README "Currencies"). The sandbox keeps
# its own copy: it must not import the code it checks (a test keeps the two lists equal).
ISO_4217_CURRENCIES: Final = frozenset(
    """
    AED ARS AUD BDT BGN BHD BIF BOB BRL CAD CHF CLP CNY COP CRC CZK DKK DZD EGP EUR GBP GTQ HKD
    HNL HUF IDR ILS INR IQD ISK JOD JPY KES KHR KRW KWD KZT LBP MAD MOP MXN MYR NGN NIO NOK NZD
    OMR PEN PHP PKR PLN PYG QAR RON RUB SAR SEK SGD THB TRY TWD TZS UAH USD VES VND ZAR
    """.split()
)

_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")
_URL_RE: Final = re.compile(r"https?://[^\s/?#@]+(?:[/?#]\S*)?", re.IGNORECASE)
_LOCALE_RE: Final = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")

_UNHASHED: Final = "personal data is not hashed"
_Problem = tuple[str, str]  # (sub-path below the event, reason)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One validation failure.

    Attributes:
        path: Dotted JSON path of the offending field, e.g. ``data.3.properties.value``.
        reason: Human-readable reason.
        code: Events API code the failure maps to.
        index: Index of the rejected event in ``data``, or None for a request-level failure.

    """

    path: str
    reason: str
    code: int = CODE_PARAM_ERROR
    index: int | None = None

    @property
    def message(self) -> str:
        """The ``path: reason`` text used in response messages."""
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class TrackRequest:
    """The request-level fields of a valid ``event/track`` body."""

    event_source: str
    event_source_id: str
    test_event_code: str | None
    data: list[Any]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Accepted ``event_time`` range in Unix seconds, both ends inclusive."""

    earliest: int
    latest: int


def is_sha256_hex(value: object) -> bool:
    """Tell whether a value is a SHA-256 digest as 64 lowercase hex characters.

    Args:
        value: Any JSON value.

    Returns:
        True for a string of exactly 64 characters from ``0-9a-f``.

    """
    return type(value) is str and _HASH_RE.fullmatch(value) is not None


def validate_request(body: object) -> TrackRequest | Rejection:
    """Check the request-level fields of a parsed ``event/track`` body.

    Args:
        body: The decoded JSON body.

    Returns:
        The request fields, or the first request-level failure (40002, or 40061 for a batch of
        more than 1,000 events).

    """
    if type(body) is not dict:
        return Rejection("body", "must be a JSON object")
    source = body.get("event_source")
    if source is None:
        return Rejection("event_source", "is required")
    if type(source) is not str or source not in EVENT_SOURCES:
        return Rejection("event_source", "must be one of web, app, offline, crm")
    source_id = body.get("event_source_id")
    if source_id is None:
        return Rejection("event_source_id", "is required")
    if type(source_id) is not str or not source_id.strip():
        return Rejection("event_source_id", "must be a non-empty string")
    test_code = body.get("test_event_code")
    if test_code is not None and (type(test_code) is not str or not test_code.strip()):
        return Rejection("test_event_code", "must be a non-empty string when present")
    data = body.get("data")
    if data is None:
        return Rejection("data", "is required")
    if type(data) is not list:
        return Rejection("data", "must be an array of events")
    if not data:
        return Rejection("data", "must contain 1 to 1000 events")
    if len(data) > MAX_EVENTS_PER_REQUEST:
        return Rejection(
            "data",
            f"contains {len(data)} events; at most {MAX_EVENTS_PER_REQUEST} per request",
            CODE_BATCH_SIZE,
        )
    return TrackRequest(source, source_id, test_code, data)


def find_unhashed_pii(data: Sequence[Any]) -> Rejection | None:
    """Find the first email, phone or external_id string that is not a SHA-256 hex digest.

    Values of the wrong JSON type are left to `validate_event`.

    Args:
        data: The ``data`` array of the request.

    Returns:
        A 40062 rejection naming the path, or None when every such string is hashed.

    """
    for index, event in enumerate(data):
        if type(event) is not dict:
            continue
        user = event.get("user")
        if type(user) is not dict:
            continue
        for field in HASHED_USER_FIELDS:
            value = user.get(field)
            if type(value) is str:
                if _HASH_RE.fullmatch(value) is None:
                    return _pii(f"data.{index}.user.{field}", index)
            elif type(value) is list:
                for position, item in enumerate(value):
                    if type(item) is str and _HASH_RE.fullmatch(item) is None:
                        return _pii(f"data.{index}.user.{field}.{position}", index)
    return None


def _pii(path: str, index: int) -> Rejection:
    return Rejection(
        path,
        "personal data is not hashed; send the SHA-256 digest as 64 lowercase hex characters",
        CODE_PII_NOT_HASHED,
        index,
    )


def validate_event(
    event: object, index: int, event_source: str, window: TimeWindow
) -> Rejection | None:
    """Validate one event of ``data`` against the contract for its event source.

    Args:
        event: The event as decoded from JSON.
        index: Its position in ``data`` (used in the path).
        event_source: ``web``, ``app``, ``offline`` or ``crm``.
        window: Accepted ``event_time`` range.

    Returns:
        The first failure (path ``data.<index>...``), or None when the event is valid.

    """
    problem = _event_problem(event, event_source, window)
    if problem is None:
        return None
    sub_path, reason = problem
    code = CODE_PII_NOT_HASHED if reason == _UNHASHED else CODE_PARAM_ERROR
    return Rejection(f"data.{index}{sub_path}", reason, code, index)


def _event_problem(event: object, source: str, window: TimeWindow) -> _Problem | None:
    if type(event) is not dict:
        return "", "must be an object"
    name = event.get("event")
    if type(name) is not str or not name.strip():
        return ".event", "is required and must be a non-empty string"
    problem = _event_time_problem(event.get("event_time"), window)
    if problem is not None:
        return problem
    event_id = event.get("event_id")
    if type(event_id) is not str or not event_id.strip():
        return ".event_id", "is required and must be a non-empty string"
    user = event.get("user")
    if user is not None:
        problem = _user_problem(user, source)
        if problem is not None:
            return problem
    properties = event.get("properties")
    if properties is not None:
        problem = _properties_problem(properties)
        if problem is not None:
            return problem
    page = event.get("page")
    if page is not None or source == "web":
        problem = _page_problem(page, url_required=source == "web")
        if problem is not None:
            return problem
    lead = event.get("lead")
    if lead is not None or source == "crm":
        problem = _lead_problem(lead, lead_id_required=source == "crm")
        if problem is not None:
            return problem
    limited = event.get("limited_data_use")
    if limited is not None and type(limited) is not bool:
        return ".limited_data_use", "must be a boolean"
    return None


def _event_time_problem(value: object, window: TimeWindow) -> _Problem | None:
    if type(value) is not int:
        return ".event_time", "is required and must be an integer Unix timestamp in seconds"
    if value > MAX_PLAUSIBLE_SECONDS:
        return ".event_time", "must be Unix seconds (the value looks like milliseconds)"
    if value < window.earliest:
        return ".event_time", "is older than the accepted window (7 days by default)"
    if value > window.latest:
        return ".event_time", "is too far in the future (over 10 minutes ahead by default)"
    return None


def _user_problem(user: object, source: str) -> _Problem | None:
    if type(user) is not dict:
        return ".user", "must be an object"
    for field in HASHED_USER_FIELDS:
        value = user.get(field)
        if value is None:
            continue
        if type(value) is str:
            if _HASH_RE.fullmatch(value) is None:
                return f".user.{field}", _UNHASHED
        elif type(value) is list:
            if not value:
                return f".user.{field}", "must not be an empty array"
            for position, item in enumerate(value):
                if type(item) is not str:
                    return f".user.{field}.{position}", "must be a string"
                if _HASH_RE.fullmatch(item) is None:
                    return f".user.{field}.{position}", _UNHASHED
        else:
            return f".user.{field}", "must be a string or an array of strings"
    if source == "crm":
        for field in CRM_FORBIDDEN_USER_FIELDS:
            if field in user:
                return f".user.{field}", "is not allowed on crm events"
    for field in PLAIN_USER_FIELDS:
        value = user.get(field)
        if value is not None and type(value) is not str:
            return f".user.{field}", "must be a string"
    ip = user.get("ip")
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return ".user.ip", "must be an IPv4 or IPv6 address"
    locale = user.get("locale")
    if locale is not None and _LOCALE_RE.fullmatch(locale) is None:
        return ".user.locale", "must be a BCP 47 locale such as en-GB"
    return None


def _is_non_negative_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    if isinstance(value, float):
        return math.isfinite(value) and value >= 0
    return False


def _properties_problem(properties: object) -> _Problem | None:
    if type(properties) is not dict:
        return ".properties", "must be an object"
    if "value" in properties and not _is_non_negative_number(properties["value"]):
        return ".properties.value", "must be a non-negative finite number"
    currency = properties.get("currency")
    if currency is not None and (type(currency) is not str or currency not in ISO_4217_CURRENCIES):
        return ".properties.currency", "must be a supported ISO 4217 code of 3 upper-case letters"
    for field in ("order_id", "content_id", "description", "search_string", "query", "shop_id"):
        value = properties.get(field)
        if value is not None and type(value) is not str:
            return f".properties.{field}", "must be a string"
    content_type = properties.get("content_type")
    if content_type is not None and content_type not in CONTENT_TYPES:
        return ".properties.content_type", "must be product or product_group"
    num_items = properties.get("num_items")
    if num_items is not None and (type(num_items) is not int or num_items < 0):
        return ".properties.num_items", "must be a non-negative integer"
    content_ids = properties.get("content_ids")
    if content_ids is not None:
        if type(content_ids) is not list:
            return ".properties.content_ids", "must be an array of strings"
        for position, item in enumerate(content_ids):
            if type(item) is not str:
                return f".properties.content_ids.{position}", "must be a string"
    contents = properties.get("contents")
    if contents is not None:
        if type(contents) is not list:
            return ".properties.contents", "must be an array of objects"
        for position, content in enumerate(contents):
            problem = _content_problem(content)
            if problem is not None:
                sub_path, reason = problem
                return f".properties.contents.{position}{sub_path}", reason
    return None


def _content_problem(content: object) -> _Problem | None:
    if type(content) is not dict:
        return "", "must be an object"
    for field in ("content_id", "content_category", "content_name", "brand"):
        value = content.get(field)
        if value is not None and type(value) is not str:
            return f".{field}", "must be a string"
    if "price" in content and not _is_non_negative_number(content["price"]):
        return ".price", "must be a non-negative finite number"
    quantity = content.get("quantity")
    if quantity is not None and (type(quantity) is not int or quantity < 1):
        return ".quantity", "must be a positive integer"
    return None


def _page_problem(page: object, *, url_required: bool) -> _Problem | None:
    if page is None:
        return ".page.url", "is required for web events"
    if type(page) is not dict:
        return ".page", "must be an object"
    url = page.get("url")
    if url is None:
        if url_required:
            return ".page.url", "is required for web events"
    elif type(url) is not str or _URL_RE.fullmatch(url) is None:
        return ".page.url", "must be an absolute http(s) URL"
    referrer = page.get("referrer")
    if referrer is not None and type(referrer) is not str:
        return ".page.referrer", "must be a string"
    return None


def _lead_problem(lead: object, *, lead_id_required: bool) -> _Problem | None:
    if lead is None:
        return ".lead.lead_id", "is required for crm events"
    if type(lead) is not dict:
        return ".lead", "must be an object"
    lead_id = lead.get("lead_id")
    if lead_id is None:
        if lead_id_required:
            return ".lead.lead_id", "is required for crm events"
    elif type(lead_id) is not str or not lead_id.strip():
        return ".lead.lead_id", "must be a non-empty string"
    lead_source = lead.get("lead_event_source")
    if lead_source is not None and type(lead_source) is not str:
        return ".lead.lead_event_source", "must be a string"
    return None
