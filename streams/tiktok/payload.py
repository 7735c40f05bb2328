"""TikTok Events API 2.0 payloads: routing a conversion to a destination and building the body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.domain.types import Channel, Conversion, Rejection

WEB = "web"
CRM = "crm"
MAX_EVENTS_PER_REQUEST = 1000
"""More events in one request reject the whole request (API code 40061)."""


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a batch goes: ``event_source`` with its pixel code or CRM event set id."""

    event_source: str
    event_source_id: str
    test_event_code: str | None = None


def route(
    conv: Conversion,
    *,
    pixel_code: str | None,
    crm_event_set_id: str | None,
    test_event_code: str | None = None,
) -> Destination | Rejection:
    """Choose the Events API destination of a conversion.

    A ``CRM``-channel conversion with a ``tiktok_lead_id`` goes to the CRM event set when one is
    configured; everything else goes to the pixel as ``web``. A ``web`` event needs ``page.url``,
    so a conversion without ``page_url`` (a status change sent without its form) is rejected
    here rather than by the API.

    Args:
        conv: The conversion.
        pixel_code: ``LEADSTREAM_TIKTOK_PIXEL_CODE``, if configured.
        crm_event_set_id: ``LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID``, if configured.
        test_event_code: ``LEADSTREAM_TIKTOK_TEST_EVENT_CODE``, if configured.

    Returns:
        The destination, or a rejection: ``no_destination`` (no pixel configured for a web
        event) or ``missing_field`` (web event without ``page_url``).

    """
    if conv.channel == Channel.CRM and crm_event_set_id and conv.click.tiktok_lead_id:
        return Destination(CRM, crm_event_set_id, test_event_code)
    label = f"Conversion event_id={conv.event_id}"
    if not pixel_code:
        return Rejection(
            "no_destination",
            f"{label}: event_source=web needs a pixel, and LEADSTREAM_TIKTOK_PIXEL_CODE is not set",
        )
    if not conv.click.page_url:
        return Rejection(
            "missing_field",
            f"{label}: field 'page_url' is required for event_source=web (page.url); "
            "set LEADSTREAM_FALLBACK_PAGE_URL to send conversions that have no page",
            "page_url",
        )
    return Destination(WEB, pixel_code, test_event_code)


def _present(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def build_event(conv: Conversion, event_source: str) -> dict[str, Any]:
    """Build one entry of the request's ``data`` array.

    Hashed keys go in ``user`` for every source; the click context (``ttclid``, ``ttp``, ``ip``,
    ``user_agent``), ``page`` and ``limited_data_use`` only for ``web``; the ``lead`` object only
    for ``crm``. Absent values are omitted, never sent as null.

    Args:
        conv: The conversion.
        event_source: ``"web"`` or ``"crm"``, from :func:`route`.

    Returns:
        The event dict, with ``event_time`` in integer Unix seconds.

    """
    web = event_source == WEB
    click = conv.click
    event: dict[str, Any] = {
        "event": conv.event,
        "event_time": int(conv.event_time.timestamp()),
        "event_id": conv.event_id,
    }
    user = _present(
        email=conv.keys.email_sha256,
        phone=conv.keys.phone_sha256,
        external_id=conv.keys.external_id_sha256,
    )
    if web:
        user.update(
            _present(
                ttclid=click.ttclid,
                ttp=click.ttp,
                ip=click.ip,
                user_agent=click.user_agent,
                locale=click.locale,
            )
        )
    if user:
        event["user"] = user
    properties = _present(value=conv.value, currency=conv.currency, order_id=conv.order_id)
    if properties:
        event["properties"] = properties
    if web:
        page = _present(url=click.page_url, referrer=click.referrer_url)
        if page:
            event["page"] = page
        event["limited_data_use"] = click.limited_data_use
    if event_source == CRM:
        event["lead"] = _present(lead_id=click.tiktok_lead_id, lead_event_source=conv.crm)
    return event


def build_request(dest: Destination, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Build the body of ``POST /open_api/v1.3/event/track/`` for one destination.

    Batching (at most :data:`MAX_EVENTS_PER_REQUEST`, test and live apart) is the caller's job.

    Args:
        dest: The destination of every event in the batch.
        events: Events from :func:`build_event`.

    Returns:
        The request body.

    """
    body: dict[str, Any] = {
        "event_source": dest.event_source,
        "event_source_id": dest.event_source_id,
        "data": [dict(e) for e in events],
    }
    if dest.test_event_code:
        body["test_event_code"] = dest.test_event_code
    return body
