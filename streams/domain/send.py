"""Sending one input of a lead as a conversion: route, event, ledger, consent, enrichment.

:class:`Step` is the working copy of a lead's state during one step of the state machine in
:mod:`streams.domain.lead`; :func:`send_status` and :func:`send_booking` turn an input that is no
longer waiting into a conversion, a count saying why not, or a dead item.

Decisions documented here (domain.md leaves them open):

- A status change's conversion is a duplicate when its event was already sent under either of its
  ids: ``<form event_id>:<event>`` or ``lead-<lead_id>:<event>`` (sent earlier without the form),
  or when its *stage* was already sent. A stage is the set of statuses that map to one event on
  the lead's route (default: ``qualified``/``sql``; ``won``/``closed_won``); sending it records
  ``stage:<status>`` in the ledger and a later change checks every status of its stage, so a
  change of the stage maps between two
  status changes (``QualifiedLead`` -> ``ApplicationApproval``) does not send the stage twice. A
  ledger from before stages were recorded is read by event ids under every name the stage has
  on either route. An ``order_id``-based Purchase is per order and has no stage entry.
- The route (web or CRM) picks the stage map, so the event is chosen when the change is sent
  (after its form, which decides the route); a status mapped on neither route is ignored.
- Order of checks for an input that maps to an event: ledger (duplicate), no match keys at all
  (``unmatched_lead``, only for inputs sent without their form), consent (withheld), Purchase
  value and currency (``invalid_value``). A withheld or dead-lettered event is not recorded as
  sent, so a later, valid change can still send it.
- ``value`` and ``currency`` travel as a pair: one without the other is dropped (except for a
  Purchase, which is dead-lettered instead).
- A conversion inherits the click of the lead's form; a booking's own page, IP, user agent and
  click ids come first. A booking is always routed ``WEB``: its event id is the browser Pixel's,
  and only the same pixel deduplicates the server copy against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from streams.domain import meta_stages
from streams.domain.consent import withheld_reason
from streams.domain.currencies import is_currency
from streams.domain.mapping import (
    conversion_event_id,
    event_for_status,
    stage_event_names,
    stage_ledger_keys,
    stage_statuses,
    status_key,
)
from streams.domain.meta_stages import META
from streams.domain.types import (
    Booking,
    Channel,
    ClickContext,
    Consent,
    Conversion,
    DeadItem,
    LeadState,
    MatchKeys,
    Outcome,
    Rejection,
    Rules,
    SourceKind,
    SourceRef,
    StatusChange,
)


def recent(times: Mapping[str, datetime], key: str, window: timedelta, now: datetime) -> bool:
    """Tell whether ``times[key]`` lies within ``window`` before ``now``."""
    at = times.get(key)
    return at is not None and now < at + window


def _describe(item: Booking | StatusChange) -> str:
    if isinstance(item, Booking):
        return f"BookingCreated booking_id={item.booking_id}"
    return f"LeadStatusChanged change_id={item.change_id}"


def _money(value: float | None, currency: str | None) -> tuple[float | None, str | None]:
    if value is None or currency is None:
        return None, None
    return value, currency.upper()


class Step:
    """A mutable working copy of one lead's state during a single step (never escapes the core)."""

    def __init__(self, state: LeadState, rules: Rules, now: datetime) -> None:
        self.rules = rules
        self.now = now
        self.lead_id = state.lead_id
        self.context = state.context
        self.sent = dict(state.sent)
        self.seen = dict(state.seen)
        self.pending = list(state.pending)
        self.conversions: list[Conversion] = []
        self.dead: list[DeadItem] = []
        self.counts: Counter[str] = Counter()

    def state(self, updated_at: datetime | None) -> LeadState:
        """Return the working copy as a stored state."""
        return LeadState(
            lead_id=self.lead_id,
            context=self.context,
            sent=self.sent,
            seen=self.seen,
            pending=tuple(self.pending),
            updated_at=updated_at,
        )

    def outcome(self, state: LeadState | None) -> Outcome:
        """Return the step's outcome with ``state`` to store (None: delete the lead)."""
        return Outcome(
            state=state,
            conversions=tuple(self.conversions),
            dead=tuple(self.dead),
            counts=MappingProxyType(dict(self.counts)),
        )

    def channel(self) -> Channel:
        """Return the lead's TikTok route: CRM for a TikTok Instant Form lead with an event set."""
        ctx = self.context
        if ctx is not None and ctx.click.tiktok_lead_id and self.rules.crm_routing:
            return Channel.CRM
        return Channel.WEB

    def emit(self, conversion: Conversion, counter: str) -> None:
        """Publish ``conversion`` and record it in the ledger (a Meta-only one as ``meta:<id>``)."""
        dest = conversion.destination
        key = conversion.event_id if dest is None else f"{dest}:{conversion.event_id}"
        self.sent[key] = self.now
        self.conversions.append(conversion)
        self.counts[counter] += 1

    def reject(self, item: Booking | StatusChange, source: SourceRef, rejection: Rejection) -> None:
        """Dead-letter ``item``, counting its reason."""
        self.dead.append(DeadItem(item, source, rejection))
        self.counts[rejection.reason] += 1

    def already_sent(self, *event_ids: str) -> bool:
        """Tell whether the ledger holds any of ``event_ids`` within its retention."""
        retention = self.rules.ledger_retention
        return any(recent(self.sent, eid, retention, self.now) for eid in event_ids)

    def withheld(self, consent: Consent) -> bool:
        """Tell whether the consent policy withholds the conversion, counting why."""
        reason = withheld_reason(consent, self.rules.consent_policy)
        if reason is None:
            return False
        self.counts[f"withheld_{reason}"] += 1
        return True

    def unmatched(self, item: Booking | StatusChange, source: SourceRef) -> None:
        """Dead-letter an input that waited in vain and has nothing to match on."""
        message = (
            f"lead {self.lead_id}: {_describe(item)} waited {self.rules.pending_wait} for the "
            "lead's form submit and has no match keys of its own"
        )
        self.reject(item, source, Rejection("unmatched_lead", message))


def _purchase_problem(change: StatusChange) -> Rejection | None:
    value, currency = change.value, change.currency
    if value is not None and value > 0 and currency is not None and is_currency(currency.upper()):
        return None
    message = (
        f"LeadStatusChanged change_id={change.change_id}: a Purchase needs a positive 'value' and "
        f"an ISO 4217 'currency', got value={value!r}, currency={currency!r}"
    )
    bad_value = value is None or not value > 0
    return Rejection("invalid_value", message, "value" if bad_value else "currency")


def _stage_sent(
    w: Step, change: StatusChange, statuses: frozenset[str], ctx_event: str | None
) -> bool:
    """Tell whether the change's stage was already sent, under any name it has on either route."""
    rules = w.rules
    if w.already_sent(*stage_ledger_keys(statuses)):
        return True
    ids = []
    for name in stage_event_names(statuses, rules.stage_map_web, rules.stage_map_crm):
        if name == rules.purchase_event and change.order_id:
            continue  # an order-based Purchase id is per order, below
        if ctx_event:
            ids.append(f"{ctx_event}:{name}")
        ids.append(f"lead-{w.lead_id}:{name}")
    return w.already_sent(*ids)


def _duplicate(
    w: Step, change: StatusChange, event: str, ids: tuple[str, str], *, per_order: bool, meta: bool
) -> bool:
    """Tell whether the change's event (or its stage) was already sent to its destinations."""
    if meta:
        if w.already_sent(*(f"{META}:{i}" for i in ids)):
            return True
        return not per_order and meta_stages.stage_sent(w, event)
    if w.already_sent(*ids):
        return True
    ctx = w.context
    stage_map = w.rules.stage_map_for(w.channel())
    statuses = stage_statuses(change.status, stage_map)
    return not per_order and _stage_sent(w, change, statuses, ctx.event_id if ctx else None)


def send_status(w: Step, change: StatusChange, source: SourceRef, counter: str) -> None:
    """Send a status change as its stage's event on the lead's route, or count why not.

    A status no TikTok route maps but Meta's stage map names goes as a Meta-only conversion; an
    Instant Form lead's earlier Meta stages go first (:mod:`streams.domain.meta_stages`).
    """
    rules, ctx = w.rules, w.context
    channel = w.channel()
    event = event_for_status(change.status, rules.stage_map_for(channel))
    destination = None
    if event is None:
        event, destination = meta_stages.meta_event(w, change.status), META
    if event is None:
        w.counts["ignored_status"] += 1
        return
    per_order = event == rules.purchase_event and bool(change.order_id)
    event_id, without_form = (
        conversion_event_id(
            event,
            form_event_id=form_id,
            lead_id=w.lead_id,
            order_id=change.order_id,
            purchase_event=rules.purchase_event,
        )
        for form_id in (ctx.event_id if ctx is not None else None, None)
    )
    ids = (event_id, without_form)
    if _duplicate(w, change, event, ids, per_order=per_order, meta=destination is not None):
        w.counts["duplicate_conversion"] += 1
        return
    if ctx is None and change.keys.is_empty():
        w.unmatched(change, source)
        return
    click = ctx.click if ctx is not None else ClickContext()
    if w.withheld(click.ad_consent):
        return
    if event == rules.purchase_event:
        problem = _purchase_problem(change)
        if problem is not None:
            w.reject(change, source, problem)
            return
    at = change.changed_at
    if meta_stages.conversion_leads(w):
        at = meta_stages.after_creation(w, at)
        meta_stages.send_earlier_stages(w, change, at, counter)
    value, currency = _money(change.value, change.currency)
    w.emit(
        Conversion(
            event_id=event_id,
            event=event,
            event_time=at,
            lead_id=w.lead_id,
            source_kind=SourceKind.STATUS_CHANGE,
            source_id=change.change_id,
            channel=channel,
            matched=ctx is not None,
            created_at=w.now,
            keys=(ctx.keys if ctx is not None else MatchKeys()).fill(change.keys),
            click=click,
            crm=change.crm,
            status=change.status,
            value=value,
            currency=currency,
            order_id=change.order_id,
            destination=destination,
        ),
        counter,
    )
    if not per_order and destination is None:
        [key] = stage_ledger_keys(frozenset({status_key(change.status)}))
        w.sent[key] = w.now


def send_booking(w: Step, booking: Booking, source: SourceRef, counter: str) -> None:
    """Send a booking as the booking event (``Schedule``) on the pixel, or count why not."""
    rules, ctx = w.rules, w.context
    if w.already_sent(booking.event_id):
        w.counts["duplicate_conversion"] += 1
        return
    own = booking.click
    if ctx is None and booking.keys.is_empty() and not (own.ttclid or own.ttp or own.ip):
        w.unmatched(booking, source)
        return
    lead_click = ctx.click if ctx is not None else ClickContext()
    if w.withheld(lead_click.ad_consent):
        return
    value, currency = _money(booking.value, booking.currency)
    w.emit(
        Conversion(
            event_id=booking.event_id,
            event=rules.booking_event,
            event_time=booking.occurred_at,
            lead_id=w.lead_id,
            source_kind=SourceKind.BOOKING,
            source_id=booking.booking_id,
            channel=Channel.WEB,
            matched=ctx is not None,
            created_at=w.now,
            keys=booking.keys.fill(ctx.keys if ctx is not None else MatchKeys()),
            click=own.fill(lead_click),  # the booking's own page, ip and click ids first
            value=value,
            currency=currency,
        ),
        counter,
    )
