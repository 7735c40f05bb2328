"""The per-lead state machine: enrichment from the form submit, waiting, and every dedup decision.

Each function takes the lead's stored state and one input (or the clock, for :func:`expire`) and
returns an :class:`Outcome`: the new state, the conversions to publish, the inputs to dead-letter
and counter increments. Duplicates, withheld and unmatched inputs are outcomes, never exceptions.

Decisions documented here (domain.md leaves them open):

- Input ids are remembered per kind (``f:`` form event id, ``s:`` change id, ``b:`` booking id),
  so a change and a booking that share an id do not shadow each other.
- A later form of the same lead only fills context fields that are still empty; consent takes the
  most restrictive answer (``DENIED`` beats ``GRANTED`` beats ``UNKNOWN``) and ``limited_data_use``
  stays on once set.
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
- A booking is always routed ``WEB``: its event id is the browser Pixel's, and only the same pixel
  deduplicates the server copy against it.
- Inputs sent after their wait expired carry consent ``UNKNOWN`` and follow the consent policy:
  under ``granted-only`` (the default) they are withheld as ``consent_unknown``.
- :func:`expire` returns the very same state object when nothing changed, so the caller can skip
  the write; pruning alone does not bump ``updated_at``, so an idle lead ages out. A lead is
  deleted when nothing is pending and its last activity (``updated_at``, else the form's
  ``occurred_at``) is ``lead_retention`` old, or when it has no context and nothing left to
  remember.
- Times stored in the state are truncated to milliseconds, like Avro, so the table's JSON
  round-trips exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

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
from streams.domain.types import (
    Booking,
    Channel,
    ClickContext,
    Consent,
    Conversion,
    FormSubmit,
    LeadContext,
    LeadState,
    MatchKeys,
    Pending,
    Rejection,
    Rules,
    SourceKind,
    SourceRef,
    StatusChange,
)


@dataclass(frozen=True, slots=True)
class DeadItem:
    """An input that cannot become a conversion, to be dead-lettered with its source."""

    item: FormSubmit | Booking | StatusChange
    source: SourceRef | None
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one step of a lead's state machine.

    ``state`` is the new state to store (None: delete the key). ``counts`` maps counter names to
    increments, e.g. ``emitted``, ``duplicate_input``, ``withheld_consent_denied``.
    """

    state: LeadState | None
    conversions: tuple[Conversion, ...] = ()
    dead: tuple[DeadItem, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


_EMITTED = "emitted"
_EXPIRED_SENT = "expired_sent"


def _tick(now: datetime) -> datetime:
    if now.utcoffset() is None:
        msg = f"now must be timezone-aware, got {now.isoformat()}"
        raise ValueError(msg)
    utc = now.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def _seen_key(item: FormSubmit | Booking | StatusChange) -> str:
    if isinstance(item, FormSubmit):
        return f"f:{item.event_id}"
    if isinstance(item, Booking):
        return f"b:{item.booking_id}"
    return f"s:{item.change_id}"


def _describe(item: Booking | StatusChange) -> str:
    if isinstance(item, Booking):
        return f"BookingCreated booking_id={item.booking_id}"
    return f"LeadStatusChanged change_id={item.change_id}"


def _recent(times: Mapping[str, datetime], key: str, window: timedelta, now: datetime) -> bool:
    at = times.get(key)
    return at is not None and now < at + window


def _money(value: float | None, currency: str | None) -> tuple[float | None, str | None]:
    if value is None or currency is None:
        return None, None
    return value, currency.upper()


class _Work:
    """A mutable working copy of one lead's state during a single step (never escapes)."""

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
        return LeadState(
            lead_id=self.lead_id,
            context=self.context,
            sent=self.sent,
            seen=self.seen,
            pending=tuple(self.pending),
            updated_at=updated_at,
        )

    def outcome(self, state: LeadState | None) -> Outcome:
        return Outcome(
            state=state,
            conversions=tuple(self.conversions),
            dead=tuple(self.dead),
            counts=MappingProxyType(dict(self.counts)),
        )

    def emit(self, conversion: Conversion, counter: str) -> None:
        self.sent[conversion.event_id] = self.now
        self.conversions.append(conversion)
        self.counts[counter] += 1

    def reject(self, item: Booking | StatusChange, source: SourceRef, rejection: Rejection) -> None:
        self.dead.append(DeadItem(item, source, rejection))
        self.counts[rejection.reason] += 1

    def already_sent(self, *event_ids: str) -> bool:
        retention = self.rules.ledger_retention
        return any(_recent(self.sent, eid, retention, self.now) for eid in event_ids)

    def withheld(self, consent: Consent) -> bool:
        reason = withheld_reason(consent, self.rules.consent_policy)
        if reason is None:
            return False
        self.counts[f"withheld_{reason}"] += 1
        return True

    def unmatched(self, item: Booking | StatusChange, source: SourceRef) -> None:
        message = (
            f"lead {self.lead_id}: {_describe(item)} waited {self.rules.pending_wait} for the "
            "lead's form submit and has no match keys of its own"
        )
        self.reject(item, source, Rejection("unmatched_lead", message))


def _channel(ctx: LeadContext | None, rules: Rules) -> Channel:
    if ctx is not None and ctx.click.tiktok_lead_id and rules.crm_routing:
        return Channel.CRM
    return Channel.WEB


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
    w: _Work, change: StatusChange, statuses: frozenset[str], ctx_event: str | None
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


def _send_status(w: _Work, change: StatusChange, source: SourceRef, counter: str) -> None:
    rules, ctx = w.rules, w.context
    channel = _channel(ctx, rules)
    stage_map = rules.stage_map_for(channel)
    event = event_for_status(change.status, stage_map)
    if event is None:
        w.counts["ignored_status"] += 1
        return
    per_order = event == rules.purchase_event and bool(change.order_id)
    statuses = stage_statuses(change.status, stage_map)
    event_id = conversion_event_id(
        event,
        form_event_id=ctx.event_id if ctx is not None else None,
        lead_id=w.lead_id,
        order_id=change.order_id,
        purchase_event=rules.purchase_event,
    )
    without_form = conversion_event_id(
        event,
        form_event_id=None,
        lead_id=w.lead_id,
        order_id=change.order_id,
        purchase_event=rules.purchase_event,
    )
    if w.already_sent(event_id, without_form) or (
        not per_order and _stage_sent(w, change, statuses, ctx.event_id if ctx else None)
    ):
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
    value, currency = _money(change.value, change.currency)
    w.emit(
        Conversion(
            event_id=event_id,
            event=event,
            event_time=change.changed_at,
            lead_id=w.lead_id,
            source_kind=SourceKind.STATUS_CHANGE,
            source_id=change.change_id,
            channel=channel,
            matched=ctx is not None,
            created_at=w.now,
            keys=(ctx.keys if ctx is not None else MatchKeys()).fill(change.keys),
            click=click,
            crm=change.crm,
            value=value,
            currency=currency,
            order_id=change.order_id,
        ),
        counter,
    )
    if not per_order:
        [key] = stage_ledger_keys(frozenset({status_key(change.status)}))
        w.sent[key] = w.now


def _send_booking(w: _Work, booking: Booking, source: SourceRef, counter: str) -> None:
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


def _parked(w: _Work, item: StatusChange | Booking, source: SourceRef, *, expired: bool) -> bool:
    """Make an input wait for the lead's form when there is none yet; tell whether it waits."""
    if w.context is not None or expired:
        return False
    key = _seen_key(item)
    if any(_seen_key(p.item) == key for p in w.pending):
        w.counts["duplicate_input"] += 1
    else:
        w.pending.append(Pending(item, source, w.now))
        w.counts["waiting_for_form"] += 1
    return True


def _handle(w: _Work, item: StatusChange | Booking, source: SourceRef, *, expired: bool) -> None:
    """Process an input that passed the redelivery check: send it, or make it wait."""
    counter = _EXPIRED_SENT if expired else _EMITTED
    if isinstance(item, Booking):
        if not _parked(w, item, source, expired=expired):
            _send_booking(w, item, source, counter)
        return
    rules = w.rules
    if all(
        event_for_status(item.status, m) is None for m in (rules.stage_map_web, rules.stage_map_crm)
    ):
        w.counts["ignored_status"] += 1
        return
    if not _parked(w, item, source, expired=expired):
        _send_status(w, item, source, counter)  # the route, known with the form, picks the event


def _context(ctx: LeadContext | None, form: FormSubmit, lead_id: str) -> LeadContext:
    """Return the lead's context after ``form``: the first form's, or its empty fields filled."""
    if ctx is None:
        return LeadContext(lead_id, form.event_id, form.occurred_at, form.keys, form.click)
    return replace(ctx, keys=ctx.keys.fill(form.keys), click=ctx.click.fill(form.click))


def on_form(state: LeadState | None, form: FormSubmit, rules: Rules, now: datetime) -> Outcome:
    """Store a form submit's click context and release the inputs that waited for it.

    The first form sets the lead's context; a later one (another ``event_id``) only fills fields
    still empty, since conversion ids derive from the first form's ``event_id``. Waiting status
    changes and bookings are then processed in arrival order, enriched.

    Args:
        state: The lead's stored state, or None for a new lead.
        form: The validated form submit.
        rules: The core's rules.
        now: The current time (timezone-aware).

    Returns:
        The outcome; a redelivered form leaves the state unchanged (``duplicate_input``).

    """
    now = _tick(now)
    if state is not None and _recent(state.seen, _seen_key(form), rules.input_dedup_window, now):
        return Outcome(state=state, counts=MappingProxyType({"duplicate_input": 1}))
    w = _Work(state if state is not None else LeadState(lead_id=form.lead_id), rules, now)
    w.seen[_seen_key(form)] = now
    w.context = _context(w.context, form, w.lead_id)
    w.counts["form_stored"] += 1
    waiting, w.pending = w.pending, []
    for p in waiting:
        _handle(w, p.item, p.source, expired=False)
    return w.outcome(w.state(updated_at=now))


def _on_input(
    state: LeadState | None,
    lead_id: str,
    item: StatusChange | Booking,
    source: SourceRef,
    rules: Rules,
    now: datetime,
) -> Outcome:
    now = _tick(now)
    key = _seen_key(item)
    if state is not None and _recent(state.seen, key, rules.input_dedup_window, now):
        return Outcome(state=state, counts=MappingProxyType({"duplicate_input": 1}))
    w = _Work(state if state is not None else LeadState(lead_id=lead_id), rules, now)
    w.seen[key] = now
    _handle(w, item, source, expired=False)
    return w.outcome(w.state(updated_at=now))


def on_status_change(
    state: LeadState | None,
    change: StatusChange,
    source: SourceRef,
    rules: Rules,
    now: datetime,
) -> Outcome:
    """Turn a CRM status change into a conversion, or make it wait for the lead's form.

    Args:
        state: The lead's stored state (keyed by ``change.lead_id``), or None.
        change: The validated status change.
        source: Where the change was read, kept for a later dead letter.
        rules: The core's rules.
        now: The current time (timezone-aware).

    Returns:
        The outcome: at most one conversion, or a count saying why not (``duplicate_input``,
        ``ignored_status``, ``waiting_for_form``, ``duplicate_conversion``, ``withheld_*``), or a
        dead item (``invalid_value`` for a Purchase without positive value and currency).

    """
    return _on_input(state, change.lead_id, change, source, rules, now)


def on_booking(
    state: LeadState | None,
    booking: Booking,
    source: SourceRef,
    rules: Rules,
    now: datetime,
) -> Outcome:
    """Turn a booking into a ``Schedule`` conversion, or make it wait for the lead's form.

    The caller has resolved the booking's lead (``booking.lead_id``, or a match by hashed email
    or phone) and passes that lead's state. A booking matched to no lead may be kept under its
    ``booking_id`` instead, like its topic key: it then waits and is sent with its own keys.

    Args:
        state: The resolved lead's stored state, or None.
        booking: The validated booking.
        source: Where the booking was read, kept for a later dead letter.
        rules: The core's rules.
        now: The current time (timezone-aware).

    Returns:
        The outcome, as for :func:`on_status_change`.

    """
    lead_id = booking.lead_id or booking.booking_id
    return _on_input(state, lead_id, booking, source, rules, now)


def expire(state: LeadState, rules: Rules, now: datetime) -> Outcome:
    """Release inputs whose wait for the form expired, prune old dedup entries, drop idle leads.

    An expired input is sent with its own match keys (``matched=False``, channel ``WEB``,
    consent ``UNKNOWN`` so the consent policy applies), or dead-lettered as ``unmatched_lead``
    when it has nothing to match on (no hashed key; for a booking also no ttclid, ttp or ip).

    Args:
        state: The lead's stored state.
        rules: The core's rules.
        now: The current time (timezone-aware).

    Returns:
        The outcome; ``state`` is the same object when nothing changed and None when the lead
        is deleted. Counts: ``expired_sent``, ``unmatched_lead``, ``pruned`` (entries),
        ``lead_deleted`` and the reasons an expired input was not sent.

    """
    now = _tick(now)
    w = _Work(state, rules, now)
    due = [p for p in state.pending if p.received_at + rules.pending_wait <= now]
    if due:
        w.pending = [p for p in state.pending if p.received_at + rules.pending_wait > now]
        for p in due:
            _handle(w, p.item, p.source, expired=True)
    pruned = 0
    for times, window in ((w.sent, rules.ledger_retention), (w.seen, rules.input_dedup_window)):
        for key in [k for k, at in times.items() if at + window <= now]:
            del times[key]
            pruned += 1
    if pruned:
        w.counts["pruned"] += pruned
    updated_at = now if due else state.updated_at
    if not w.pending:
        if w.context is not None:
            last = updated_at or w.context.occurred_at
            idle = last + rules.lead_retention <= now
        else:
            idle = not w.sent and not w.seen
        if idle:
            w.counts["lead_deleted"] += 1
            return w.outcome(None)
    if not due and not pruned:
        return Outcome(state=state)
    return w.outcome(w.state(updated_at=updated_at))


def forget_input(
    state: LeadState | None, item: FormSubmit | Booking | StatusChange
) -> LeadState | None:
    """Forget that ``item`` was seen, for a deliberate re-drive from the dead-letter topic.

    A replay of the input topics is recognised (rule 1) and sends nothing new; a re-driven record
    (marked by ``leadstream dead-letters --redrive``) is processed again. The conversion ledger
    (rule 2) still keeps anything from being sent twice.
    """
    if state is None:
        return None
    key = _seen_key(item)
    if key not in state.seen:
        return state
    return replace(state, seen={k: v for k, v in state.seen.items() if k != key})
