"""Status-to-event mapping (the stage map) and deterministic conversion event ids."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

# Web: TikTok optimises web campaigns only on standard events, so a qualified lead goes out as the
# Lead-objective standard event ApplicationApproval (domain.md §4).
DEFAULT_STAGE_MAP_WEB: Mapping[str, str] = MappingProxyType(
    {
        "qualified": "ApplicationApproval",
        "sql": "ApplicationApproval",
        "won": "Purchase",
        "closed_won": "Purchase",
    }
)

# CRM: event sets take the advertiser's own names, mapped to standard events in Events Manager.
DEFAULT_STAGE_MAP_CRM: Mapping[str, str] = MappingProxyType(
    {
        "qualified": "QualifiedLead",
        "sql": "QualifiedLead",
        "won": "Purchase",
        "closed_won": "Purchase",
    }
)


def status_key(status: str) -> str:
    """Normalise a CRM status for matching: trimmed, lower-case."""
    return status.strip().lower()


def parse_stage_map(text: str) -> dict[str, str]:
    """Parse a stage map (``LEADSTREAM_STAGE_MAP``, ``_WEB``, ``_CRM``): JSON, status -> event name.

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
        status = status_key(raw_status)
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
    key = status_key(status)
    if not key:
        return None
    event = stage_map.get(key)
    if event is not None:
        return event
    for raw, candidate in stage_map.items():
        if status_key(raw) == key:
            return candidate
    return None


def stage_statuses(status: str, stage_map: Mapping[str, str]) -> frozenset[str]:
    """Return the stage of ``status``: every status that maps to the same event, normalised.

    The stage, not the event name, is what a lead must not send twice: with the default maps
    ``qualified`` and ``sql`` are one stage, whatever event it is named on either route.

    Args:
        status: The CRM stage, any case.
        stage_map: Status -> event name.

    Returns:
        The normalised statuses of the stage (empty when ``status`` is not mapped).

    """
    event = event_for_status(status, stage_map)
    if event is None:
        return frozenset()
    return frozenset(status_key(raw) for raw, name in stage_map.items() if name == event) | {
        status_key(status)
    }


def stage_ledger_keys(statuses: frozenset[str]) -> tuple[str, ...]:
    """Return the conversion ledger keys that mark a stage as sent (``stage:<status>``)."""
    return tuple(f"stage:{s}" for s in sorted(statuses))


def stage_event_names(statuses: frozenset[str], *stage_maps: Mapping[str, str]) -> frozenset[str]:
    """Return every event name the stage's statuses map to in ``stage_maps``.

    A ledger written before stages were recorded holds only event ids; a stage is also found sent
    under any name it has on either route (e.g. ``QualifiedLead`` before the web route moved to
    ``ApplicationApproval``).
    """
    names: set[str] = set()
    for stage_map in stage_maps:
        for status in statuses:
            event = event_for_status(status, stage_map)
            if event is not None:
                names.add(event)
    return frozenset(names)


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
