"""The per-lead state machine: enrichment from the form submit, waiting, and every dedup decision.

Each function takes the lead's stored state and one input (or the clock, for :func:`expire`) and
returns an :class:`Outcome`: the new state, the conversions to publish, the inputs to dead-letter
and counter increments. Duplicates, withheld and unmatched inputs are outcomes, never exceptions.

Decisions documented here (domain.md leaves them open; how an input is sent as a conversion is
in :mod:`streams.domain.send`):

- Input ids are remembered per kind (``f:`` form event id, ``s:`` change id, ``b:`` booking id),
  so a change and a booking that share an id do not shadow each other.
- A later form of the same lead only fills context fields that are still empty; consent takes the
  most restrictive answer (``DENIED`` beats ``GRANTED`` beats ``UNKNOWN``) and ``limited_data_use``
  stays on once set.
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

from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from streams.domain.mapping import event_for_status
from streams.domain.meta_stages import send_first_stage
from streams.domain.send import Step, recent, send_booking, send_status
from streams.domain.times import truncate_ms
from streams.domain.types import (
    Booking,
    FormSubmit,
    LeadContext,
    LeadState,
    Outcome,
    Pending,
    Rules,
    SourceRef,
    StatusChange,
)

_EMITTED = "emitted"
_EXPIRED_SENT = "expired_sent"


def _tick(now: datetime) -> datetime:
    if now.utcoffset() is None:
        msg = f"now must be timezone-aware, got {now.isoformat()}"
        raise ValueError(msg)
    return truncate_ms(now.astimezone(UTC))


def _seen_key(item: FormSubmit | Booking | StatusChange) -> str:
    if isinstance(item, FormSubmit):
        return f"f:{item.event_id}"
    if isinstance(item, Booking):
        return f"b:{item.booking_id}"
    return f"s:{item.change_id}"


def _parked(w: Step, item: StatusChange | Booking, source: SourceRef, *, expired: bool) -> bool:
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


def _handle(w: Step, item: StatusChange | Booking, source: SourceRef, *, expired: bool) -> None:
    """Process an input that passed the redelivery check: send it, or make it wait."""
    counter = _EXPIRED_SENT if expired else _EMITTED
    if isinstance(item, Booking):
        if not _parked(w, item, source, expired=expired):
            send_booking(w, item, source, counter)
        return
    rules = w.rules
    maps = (rules.stage_map_web, rules.stage_map_crm, rules.stage_map_meta or {})
    if all(event_for_status(item.status, m) is None for m in maps):
        w.counts["ignored_status"] += 1
        return
    if not _parked(w, item, source, expired=expired):
        send_status(w, item, source, counter)  # the route, known with the form, picks the event


def _context(ctx: LeadContext | None, form: FormSubmit, lead_id: str, rules: Rules) -> LeadContext:
    """Return the lead's context after ``form``: the first form's, or its empty fields filled.

    The phone's digits-only hash is Meta's form: without Meta it is not stored (75 bytes a lead).
    """
    keys = form.keys
    if rules.stage_map_meta is None and keys.phone_digits_sha256 is not None:
        keys = replace(keys, phone_digits_sha256=None)
    if ctx is None:
        return LeadContext(lead_id, form.event_id, form.occurred_at, keys, form.click)
    return replace(ctx, keys=ctx.keys.fill(keys), click=ctx.click.fill(form.click))


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
    if state is not None and recent(state.seen, _seen_key(form), rules.input_dedup_window, now):
        return Outcome(state=state, counts=MappingProxyType({"duplicate_input": 1}))
    w = Step(state if state is not None else LeadState(lead_id=form.lead_id), rules, now)
    w.seen[_seen_key(form)] = now
    w.context = _context(w.context, form, w.lead_id, rules)
    w.counts["form_stored"] += 1
    send_first_stage(w, _EMITTED)  # an Instant Form lead's first Conversion Leads stage, for Meta
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
    if state is not None and recent(state.seen, key, rules.input_dedup_window, now):
        return Outcome(state=state, counts=MappingProxyType({"duplicate_input": 1}))
    w = Step(state if state is not None else LeadState(lead_id=lead_id), rules, now)
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
    w = Step(state, rules, now)
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
