"""Meta Conversions API payloads, built from the same :class:`Conversion` as TikTok's (pure).

Rules (meta-capi.md; README "Meta Conversions API"):

- **Event name.** A status change is mapped from its CRM stage by the Meta stage map
  (:data:`DEFAULT_STAGE_MAP_META`, ``LEADSTREAM_META_STAGE_MAP`` overrides); a status the map does
  not know is skipped for Meta (:class:`Skipped`), not dead-lettered. A booking keeps its event
  (``Schedule``).
- **event_id.** A booking keeps the browser's ``event_id`` so the Pixel copy merges; a status
  change is ``<form event_id>:<event>`` like on TikTok, with Meta's event name (the base of the
  conversion's own id is reused, so ``<order_id>:Purchase`` and ``lead-<id>:<event>`` carry over).
- **action_source.** A booking with its page and user agent is ``website`` (with
  ``event_source_url`` and ``client_user_agent``); CRM-stage events are ``system_generated``.
- **Instant Form leads** (``meta_lead_id``): status changes take the Conversion Leads shape
  (``user_data.lead_id`` unhashed, ``custom_data.event_source: "crm"``, ``lead_event_source``).
  The core sends their first stage and fills in skipped ones, in order and after the lead's
  creation (:mod:`streams.domain.meta_stages`).
- **Meta-only conversions** (``destination="meta"``) carry Meta's own event name and id (a
  conversion for another destination only is skipped before it gets here, by the destination).
- **user_data.** ``em``, ``ph`` (hashed without ``+``) and ``external_id`` as SHA-256 arrays;
  ``fbc``, ``fbp``, ``client_ip_address``, ``client_user_agent`` never hashed.
- **Age.** Meta rejects a whole request when one event is over 7 days old, so such an event is
  refused here (``too_old_for_destination``) and never sent.
- **Consent.** ``DENIED`` is never sent; ``limited_data_use`` becomes
  ``data_processing_options: ["LDU"]`` with country and state ``0`` (Meta geolocates); otherwise
  ``[]`` says explicitly that LDU is off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from streams.domain.mapping import event_for_status
from streams.domain.meta_stages import META, is_meta_lead_id
from streams.domain.types import Consent, Conversion, Rejection, SourceKind

DEFAULT_STAGE_MAP_META: Mapping[str, str] = MappingProxyType(
    {
        "qualified": "QualifiedLead",
        "sql": "QualifiedLead",
        "won": "Purchase",
        "closed_won": "Purchase",
    }
)
"""Meta's defaults: ``QualifiedLead`` is a custom event (campaigns optimise on a custom conversion
built from it), ``Purchase`` is standard."""

MAX_EVENTS_PER_REQUEST = 1000
"""More events in one request are refused by the API."""
MAX_EVENT_AGE = timedelta(days=7)
"""An older ``event_time`` fails the whole request (code 100, subcode 2804003)."""
AGE_MARGIN = timedelta(minutes=5)
"""Refused this much before the limit, so an event accepted here is not too old on arrival."""
WEBSITE = "website"
SYSTEM_GENERATED = "system_generated"
CRM_EVENT_SOURCE = "crm"
DEFAULT_LEAD_EVENT_SOURCE = "Leadstream"
"""``lead_event_source`` when a conversion does not name its CRM."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A conversion that is not for Meta (not an error): counted, neither sent nor dead-lettered."""

    reason: str
    message: str


def event_name(conv: Conversion, stage_map: Mapping[str, str]) -> str | None:
    """Return the Meta event name of a conversion, or None when Meta's map does not map it.

    Args:
        conv: The conversion.
        stage_map: The Meta stage map (status -> event name).

    Returns:
        The booking's own event, a Meta-only conversion's own event, or the status's event in
        ``stage_map``.

    """
    if conv.source_kind is SourceKind.BOOKING or conv.destination == META:
        return conv.event
    if not conv.status:
        return None
    return event_for_status(conv.status, stage_map)


def event_id(conv: Conversion, name: str) -> str:
    """Return the Meta ``event_id`` of a conversion sent as ``name``.

    A booking keeps the browser's id. A status change's id is ``<base>:<name>`` where ``base`` is
    the conversion's own id without its ``:<event>`` suffix (the form's event id, an
    ``order_id`` or ``lead-<id>``), so a Pixel copy with the same name and id merges.

    Args:
        conv: The conversion.
        name: The Meta event name from :func:`event_name`.

    Returns:
        The event id.

    """
    if conv.source_kind is SourceKind.BOOKING or conv.destination == META:
        return conv.event_id
    base = conv.event_id.removesuffix(f":{conv.event}")
    return f"{base}:{name}"


def too_old(conv: Conversion, now: datetime) -> Rejection | None:
    """Refuse an event Meta would reject for its age (which would fail its whole request).

    Args:
        conv: The conversion.
        now: The current time.

    Returns:
        A ``too_old_for_destination`` rejection naming ``event_time``, or None.

    """
    age = now - conv.event_time
    if age < MAX_EVENT_AGE - AGE_MARGIN:
        return None
    days = age.total_seconds() / 86400
    return Rejection(
        "too_old_for_destination",
        f"Conversion event_id={conv.event_id}: field 'event_time' is {days:.1f} days old; "
        "Meta accepts events up to 7 days old and rejects the whole request otherwise",
        "event_time",
    )


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _hashed(value: str | None) -> list[str] | None:
    return None if value is None else [value]


def _lead_id(text: str) -> int | str:
    return int(text) if is_meta_lead_id(text) else text


def user_data(conv: Conversion, *, conversion_leads: bool) -> dict[str, Any]:
    """Return ``user_data``: hashed arrays for keys, click context unhashed.

    The phone goes hashed in Meta's form (digits, no ``+``) only: a phone that arrived already
    hashed has no known Meta form and is left out, never sent in TikTok's ``+`` form.

    Args:
        conv: The conversion.
        conversion_leads: True for the Conversion Leads shape (adds ``lead_id``).

    Returns:
        The ``user_data`` object (absent values omitted).

    """
    keys = conv.keys
    data = _present(
        em=_hashed(keys.email_sha256),
        ph=_hashed(keys.phone_digits_sha256),
        external_id=_hashed(keys.external_id_sha256),
        fbc=conv.click.fbc,
        fbp=conv.click.fbp,
        client_ip_address=conv.click.ip,
        client_user_agent=conv.click.user_agent,
    )
    if conversion_leads and conv.click.meta_lead_id:
        data["lead_id"] = _lead_id(conv.click.meta_lead_id)
    return data


def _has_match_key(data: Mapping[str, Any]) -> bool:
    strong = ("em", "ph", "external_id", "fbc", "fbp", "lead_id")
    if any(name in data for name in strong):
        return True
    return "client_ip_address" in data and "client_user_agent" in data


def action_source(conv: Conversion) -> str:
    """Return ``website`` for a booking with its page and user agent, else ``system_generated``."""
    if conv.source_kind is SourceKind.BOOKING and conv.click.page_url and conv.click.user_agent:
        return WEBSITE
    return SYSTEM_GENERATED


def build_event(
    conv: Conversion,
    *,
    stage_map: Mapping[str, str],
    now: datetime,
) -> dict[str, Any] | Rejection | Skipped:
    """Build one entry of the request's ``data`` array.

    Args:
        conv: The conversion.
        stage_map: The Meta stage map.
        now: The current time (for the 7-day rule).

    Returns:
        The event dict (``event_time`` in integer Unix seconds), a :class:`Rejection` to
        dead-letter (``too_old_for_destination``, ``missing_field``) or a :class:`Skipped`
        (``consent_denied``, ``status_not_mapped``).

    """
    label = f"Conversion event_id={conv.event_id}"
    if conv.click.ad_consent is Consent.DENIED:
        return Skipped("consent_denied", f"{label}: consent denied, never sent")
    name = event_name(conv, stage_map)
    if name is None:
        return Skipped(
            "status_not_mapped",
            f"{label}: status {conv.status!r} is not in the Meta stage map",
        )
    old = too_old(conv, now)
    if old is not None:
        return old
    lead_id = conv.click.meta_lead_id
    # Conversion Leads only with a real leadgen id: Meta rejects the whole request otherwise.
    leads = conv.source_kind is SourceKind.STATUS_CHANGE and is_meta_lead_id(lead_id)
    source = SYSTEM_GENERATED if leads else action_source(conv)
    event: dict[str, Any] = {
        "event_name": name,
        "event_time": int(conv.event_time.timestamp()),
        "event_id": event_id(conv, name),
        "action_source": source,
    }
    if conv.click.page_url and not leads:
        event["event_source_url"] = conv.click.page_url
    if conv.click.referrer_url and not leads:
        event["referrer_url"] = conv.click.referrer_url
    users = user_data(conv, conversion_leads=leads)
    if not _has_match_key(users):
        return Rejection(
            "missing_field",
            f"{label}: Meta needs at least one customer information parameter in 'user_data' "
            "(email, phone, external_id, fbc, fbp, lead_id, or IP with user agent)",
            "user_data",
        )
    event["user_data"] = users
    custom = _present(value=conv.value, currency=conv.currency, order_id=conv.order_id)
    if leads:
        custom["event_source"] = CRM_EVENT_SOURCE
        custom["lead_event_source"] = conv.crm or DEFAULT_LEAD_EVENT_SOURCE
    if custom:
        event["custom_data"] = custom
    if conv.click.limited_data_use:
        event["data_processing_options"] = ["LDU"]
        event["data_processing_options_country"] = 0
        event["data_processing_options_state"] = 0
    else:
        event["data_processing_options"] = []
    return event


def build_request(
    events: Sequence[Mapping[str, Any]], test_event_code: str | None = None
) -> dict[str, Any]:
    """Build the body of ``POST /{version}/{dataset id}/events`` (the token travels apart).

    Batching (at most :data:`MAX_EVENTS_PER_REQUEST`, test and live apart) is the caller's job.

    Args:
        events: Events from :func:`build_event`.
        test_event_code: ``LEADSTREAM_META_TEST_EVENT_CODE``, if configured.

    Returns:
        The request body.

    """
    body: dict[str, Any] = {"data": [dict(e) for e in events]}
    if test_event_code:
        body["test_event_code"] = test_event_code
    return body
