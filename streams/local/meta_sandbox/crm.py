"""Conversion Leads checks: per Instant Form lead, stages in order and after the lead's creation.

Meta does not reject such events; it may discard them, which an advertiser only notices as
missing conversions. The sandbox accepts them too, and marks each one with a warning (on its
record, and counted in ``GET /_sandbox/stats`` as ``crm_warnings``), so tests can assert there are
none. The sandbox knows no leadgen creation time: the lead's first stage received stands for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

DEFAULT_CRM_STAGES: Final = ("Lead", "QualifiedLead", "Purchase")
"""The advertiser's CRM stages, in funnel order (Leadstream's defaults)."""


def crm_lead_id(event: Mapping[str, Any]) -> str | None:
    """Return the event's Meta lead id when it is a Conversion Leads event, else None."""
    user = event.get("user_data")
    custom = event.get("custom_data")
    if not isinstance(user, Mapping) or not isinstance(custom, Mapping):
        return None
    if custom.get("event_source") != "crm" or user.get("lead_id") is None:
        return None
    return str(user["lead_id"])


def stage_warnings(
    earlier: Sequence[Mapping[str, Any]], event: Mapping[str, Any], stages: Sequence[str]
) -> list[str]:
    """Say what is wrong with a lead's Conversion Leads event, given its earlier accepted ones.

    Args:
        earlier: The lead's events accepted before, in arrival order.
        event: The event just accepted.
        stages: The CRM stages in funnel order.

    Returns:
        Warnings (empty when the event is in order and after the lead's first stage).

    """
    warnings: list[str] = []
    name = event["event_name"]
    received = {e["event_name"] for e in earlier}
    if name in stages:
        missing = [s for s in stages[: stages.index(name)] if s not in received]
        if missing:
            warnings.append(f"stage {name} arrived before {', '.join(missing)}")
    if earlier and event["event_time"] < earlier[0]["event_time"]:
        warnings.append(f"stage {name} has an event_time before the lead's creation")
    return warnings
