"""Meta-only events the core decides: Conversion Leads stages and statuses only Meta maps (pure).

Meta's CRM integration ("Conversion Leads", meta-capi.md §5) covers Instant Form leads, those with
a ``meta_lead_id``. Its rules need the lead's history, which only the core has, so the core emits
them as conversions marked ``destination="meta"`` (TikTok skips those):

- **Every stage, in order, the first included.** The stages are the first stage
  (:attr:`Rules.meta_lead_event`, ``Lead``), then the event names of the Meta stage map in the
  order they first appear (default ``QualifiedLead``, ``Purchase``). The first stage is sent when
  the lead's form arrives. A later stage sends every earlier stage not yet sent first, at the same
  ``event_time`` and before it on the topic (a lead that jumps from new to won sends ``Lead``,
  ``QualifiedLead``, then ``Purchase``).
- **After the lead's creation.** The lead was created when its form was submitted
  (``occurred_at``); a stage's ``event_time`` is at least one whole second after that, so a CRM
  clock behind the form's never dates a stage before the lead. The first stage is sent at exactly
  that second. A neutral conversion is one record for both platforms, so TikTok's copy of such a
  change carries the corrected time too.
- **A status only Meta's map names** (``LEADSTREAM_META_STAGE_MAP``, no TikTok route maps it) is a
  Meta-only conversion for every lead, web leads included; TikTok-mapped statuses stay one neutral
  conversion that each destination maps by its own map.

Ledger: a Meta-only conversion is recorded as ``meta:<event_id>``, so it never hides a TikTok event
of the same name (``Purchase``). A Meta stage counts as sent when such an entry exists under the
form's or the lead's id, or when a neutral conversion of a status Meta maps to it was sent
(``stage:<status>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from streams.domain.mapping import (
    conversion_event_id,
    event_for_status,
    stage_ledger_keys,
    status_key,
)
from streams.domain.types import Conversion, SourceKind, StatusChange

if TYPE_CHECKING:
    from streams.domain.send import Step

META = "meta"
"""The ``destination`` of a Meta-only conversion."""
_META_LEAD_ID = re.compile(r"\d{15,17}")
_SECOND = timedelta(seconds=1)


def is_meta_lead_id(text: str | None) -> bool:
    """Tell whether ``text`` is a Meta leadgen id (15 to 17 digits); Meta rejects anything else."""
    return text is not None and _META_LEAD_ID.fullmatch(text) is not None


def stage_order(rules_first: str, stage_map: Mapping[str, str]) -> tuple[str, ...]:
    """Return the Conversion Leads stages in order: the first stage, then the map's event names."""
    names = [rules_first]
    for name in stage_map.values():
        if name not in names:
            names.append(name)
    return tuple(names)


def conversion_leads(w: Step) -> bool:
    """Tell whether the lead goes to Meta as a Conversion Leads lead (Meta on, real leadgen id)."""
    ctx = w.context
    return (
        w.rules.stage_map_meta is not None
        and ctx is not None
        and is_meta_lead_id(ctx.click.meta_lead_id)
    )


def meta_event(w: Step, status: str) -> str | None:
    """Return Meta's event for a status, or None (Meta off, or its map does not name it)."""
    stage_map = w.rules.stage_map_meta
    return None if stage_map is None else event_for_status(status, stage_map)


def after_creation(w: Step, at: datetime) -> datetime:
    """Return ``at``, or the lead's creation second plus one when ``at`` is not later than that."""
    ctx = w.context
    if ctx is None:
        return at
    floor = ctx.occurred_at.replace(microsecond=0) + _SECOND
    return max(at, floor)


def _ids(w: Step, name: str) -> tuple[str, ...]:
    ctx = w.context
    ids = [f"{META}:lead-{w.lead_id}:{name}"]
    if ctx is not None:
        ids.append(f"{META}:{ctx.event_id}:{name}")
    return tuple(ids)


def stage_sent(w: Step, name: str) -> bool:
    """Tell whether Meta's stage ``name`` was sent, Meta-only or with a neutral conversion."""
    if w.already_sent(*_ids(w, name)):
        return True
    stage_map = w.rules.stage_map_meta or {}
    statuses = frozenset(status_key(s) for s, n in stage_map.items() if n == name)
    return bool(statuses) and w.already_sent(*stage_ledger_keys(statuses))


def meta_conversion(
    w: Step, name: str, at: datetime, source_id: str, *, crm: str | None = None
) -> Conversion:
    """Build a Meta-only stage conversion of the lead (no value: a stage, not a sale)."""
    ctx = w.context
    assert ctx is not None  # noqa: S101 - Meta-only stages need the form's context
    event_id = conversion_event_id(
        name,
        form_event_id=ctx.event_id,
        lead_id=w.lead_id,
        order_id=None,
        purchase_event=w.rules.purchase_event,
    )
    return Conversion(
        event_id=event_id,
        event=name,
        event_time=at,
        lead_id=w.lead_id,
        source_kind=SourceKind.STATUS_CHANGE,
        source_id=source_id,
        channel=w.channel(),
        matched=True,
        created_at=w.now,
        keys=ctx.keys,
        click=ctx.click,
        crm=crm,
        destination=META,
    )


def send_first_stage(w: Step, counter: str) -> None:
    """Send the first Conversion Leads stage when an Instant Form lead's form is stored."""
    if not conversion_leads(w) or stage_sent(w, w.rules.meta_lead_event):
        return
    ctx = w.context
    assert ctx is not None  # noqa: S101 - conversion_leads checked it
    if w.withheld(ctx.click.ad_consent):
        return
    at = after_creation(w, ctx.occurred_at)
    w.emit(meta_conversion(w, w.rules.meta_lead_event, at, ctx.event_id), counter)


def send_earlier_stages(w: Step, change: StatusChange, at: datetime, counter: str) -> None:
    """Send, in order, every Conversion Leads stage before the change's one that was not sent."""
    stage_map = w.rules.stage_map_meta
    name = meta_event(w, change.status)
    if stage_map is None or name is None or not conversion_leads(w):
        return
    order = stage_order(w.rules.meta_lead_event, stage_map)
    for earlier in order[: order.index(name)]:
        if not stage_sent(w, earlier):
            conv = meta_conversion(w, earlier, at, change.change_id, crm=change.crm)
            w.emit(conv, counter)
            w.counts["meta_stage_filled_in"] += 1
