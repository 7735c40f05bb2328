"""Status-to-event mapping (the stage map) and deterministic conversion event ids."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

DEFAULT_STAGE_MAP: Mapping[str, str] = MappingProxyType(
    {
        "qualified": "QualifiedLead",
        "sql": "QualifiedLead",
        "won": "Purchase",
        "closed_won": "Purchase",
    }
)


def _status_key(status: str) -> str:
    return status.strip().lower()


def parse_stage_map(text: str) -> dict[str, str]:
    """Parse ``LEADSTREAM_STAGE_MAP``: a JSON object of CRM status -> event name.

    Statuses are trimmed and lower-cased (matching is case-insensitive); event names are trimmed
    and kept case-sensitive, as the Events API is.

    Args:
        text: The JSON text, e.g. ``{"qualified": "QualifiedLead", "won": "Purchase"}``.

    Returns:
        The normalised map.

    Raises:
        ValueError: The text is not JSON, not an object, has a blank status, a non-string or blank
            event name, or two statuses that differ only in case or spacing map to different events.

    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"stage map is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise ValueError(msg) from exc
    if not isinstance(data, dict):
        msg = f"stage map must be a JSON object of status -> event name, not {type(data).__name__}"
        raise ValueError(msg)
    result: dict[str, str] = {}
    for raw_status, raw_event in data.items():
        status = _status_key(raw_status)
        if not status:
            msg = "stage map has a blank status"
            raise ValueError(msg)
        if not isinstance(raw_event, str):
            msg = (
                f"stage map status {raw_status!r}: event name must be a string, "
                f"not {type(raw_event).__name__}"
            )
            raise ValueError(msg)
        event = raw_event.strip()
        if not event:
            msg = f"stage map status {raw_status!r}: event name is blank"
            raise ValueError(msg)
        if result.get(status, event) != event:
            msg = (
                f"stage map status {raw_status!r} maps to {event!r}, but the same status "
                f"(case-insensitive) already maps to {result[status]!r}"
            )
            raise ValueError(msg)
        result[status] = event
    return result


def event_for_status(status: str, stage_map: Mapping[str, str]) -> str | None:
    """Return the event a CRM status maps to, or None when the status is not mapped.

    Args:
        status: The CRM stage, any case, surrounding spaces ignored.
        stage_map: Status -> event name; keys are expected normalised (see
            :func:`parse_stage_map`), but a hand-built map with other keys also matches.

    Returns:
        The event name, or None.

    """
    key = _status_key(status)
    if not key:
        return None
    event = stage_map.get(key)
    if event is not None:
        return event
    for raw, candidate in stage_map.items():
        if _status_key(raw) == key:
            return candidate
    return None


def conversion_event_id(
    event: str,
    *,
    form_event_id: str | None,
    lead_id: str,
    order_id: str | None,
    purchase_event: str = "Purchase",
) -> str:
    """Return the deterministic event_id of a status-change conversion (domain.md §4).

    A Purchase with an ``order_id`` is ``"<order_id>:Purchase"``, so each order counts once;
    otherwise the id derives from the form's browser event id, ``"<form event_id>:<event>"``,
    or, for a change sent without its form (the wait expired), from the lead:
    ``"lead-<lead_id>:<event>"``.
    Bookings do not come here: they reuse their own browser event id.

    Args:
        event: The event name.
        form_event_id: The lead's form event id, when the form is known.
        lead_id: The lead id.
        order_id: The change's order id, used for Purchase only.
        purchase_event: The name of the purchase event.

    Returns:
        The event id.

    """
    if event == purchase_event and order_id:
        return f"{order_id}:{event}"
    if form_event_id:
        return f"{form_event_id}:{event}"
    return f"lead-{lead_id}:{event}"
