"""The lead-quality report as plain values, aggregated from decoded topic records (pure).

:func:`aggregate` takes the decoded Avro dicts of the six topics (already limited to the time
range by their Kafka record timestamps) and returns a :class:`Report`. It reads no clock, no
environment and no broker, so every figure can be checked against a known history.

Definitions (what each figure means, from what the topics carry):

- **Route** of a conversion or receipt: its ``channel`` / ``event_source`` (``web`` or ``crm``).
  Route of a form: ``crm`` when it has a ``tiktok_lead_id`` and CRM routing is configured, else
  ``web`` (the worker's rule).
- **Funnel** per route: ``forms`` = distinct leads with a form submit in range (a lead's earliest
  form decides its route); ``qualified`` = those leads with a status-change conversion in range
  whose event is not the purchase event; ``won`` = those leads with a purchase conversion from a
  status change. Rates: qualified/forms, won/qualified, won/forms (null when dividing by zero).
- **Unmatched status changes**: distinct ``change_id`` values in range whose lead has no form in
  range (its form may be older than the range, or never arrived). ``sent_without_form`` counts
  conversions the worker sent with their own keys after the wait expired (``matched`` false).
- **Status change to accepted**: for each event accepted by the destination (a ``DELIVERED``
  receipt, earliest per ``event_id``) whose conversion came from a status change, the receipt's
  ``decided_at`` minus the conversion's ``event_time`` (the CRM's ``changed_at``).
- **Form to qualified**: per lead in the funnel, the first qualifying conversion's
  ``event_time`` minus the lead's earliest form ``occurred_at``.
- **Destination**: the figures are the TikTok Events API's. Meta's receipts
  (``destination`` ``meta``) and Meta-only conversions (a ``destination`` set: Conversion Leads
  stages, statuses only Meta maps) are left out, so an event id both platforms share counts once.
- Percentiles are nearest-rank: p = the ceil(q*n)-th smallest value; durations are seconds.
- **Match-key coverage**: over accepted events whose conversion is in range, the share carrying
  each key (``ip_user_agent`` needs both). Weakest keys: those under 50 %; when none is, the
  lowest key(s) if under 100 %.
- **Delivery**: ``accepted`` = distinct event ids with a ``DELIVERED`` receipt; ``rejected`` =
  distinct event ids dead-lettered and never accepted, by API code (``no_answer`` when none);
  ``retried`` = distinct event ids with a receipt of more than one attempt;
  ``duplicate_request`` = accepted with code 40050 (the API had it already).
- **Deduplicated**: ``by_input`` = input records in range beyond the first with the same id
  (form ``event_id``, ``booking_id``, ``change_id``); ``by_ledger`` = distinct status changes
  (bookings) mapping to an event the lead already had a conversion for, from another, not later,
  change (booking); ``resends_merged`` = conversion records beyond the first per ``event_id``
  (re-published, merged by the destination's event id dedup).
- **Withheld by consent** (derived): distinct mapped status changes and bookings of a lead with a
  form in range, not deduplicated, without a conversion, whose lead's consent (most restrictive
  of its forms) the consent policy withholds. Inputs sent without their form are counted only
  by the worker's metrics.
- **Dead letters**: by reason, per UTC day of ``dead_lettered_at``, and the most frequent
  (reason, message) pairs.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from streams.domain.consent import withheld_reason
from streams.domain.mapping import event_for_status
from streams.domain.types import Consent, Rules
from streams.ops.report.figures import (
    MATCH_KEYS,
    ROUTES,
    TOP_MESSAGES,
    WEAK_SHARE,
    Coverage,
    DayCount,
    DeadLetters,
    Delivery,
    Distribution,
    EventRow,
    Funnel,
    History,
    Report,
    Stats,
    TopMessage,
    histogram,
    stats,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ISO_DURATION = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(text: str) -> timedelta | None:
    """Parse ``7d``, ``36h``, ``90m``, ``30s``, ``2w`` or ISO 8601 ``PT24H``/``P7D``; else None."""
    m = _DURATION.match(text)
    if m:
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    m = _ISO_DURATION.match(text.strip())
    if m and any(m.groupdict().values()) and not text.strip().upper().endswith("T"):
        parts = {k: float(v) for k, v in m.groupdict().items() if v}
        return timedelta(
            weeks=parts.get("w", 0),
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    return None


def parse_time(text: str, now: datetime) -> datetime:
    """Parse ``--since``/``--until``: an ISO 8601 time (naive means UTC) or a duration before now.

    Raises:
        ValueError: the text is neither; the message says what is accepted.

    """
    duration = parse_duration(text)
    if duration is not None:
        return now - duration
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = (
            f"{text!r} is neither an ISO 8601 time (2026-11-23T00:00:00Z) "
            "nor a duration (7d, 36h, PT24H)"
        )
        raise ValueError(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _route(value: Any) -> str:
    return str(value or "web").lower()


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


_CONSENT_RANK = {Consent.UNKNOWN: 0, Consent.GRANTED: 1, Consent.DENIED: 2}


def _consent(value: Any) -> Consent:
    try:
        return Consent(str(value))
    except ValueError:
        return Consent.UNKNOWN


def _has_keys(conversion: Mapping[str, Any]) -> dict[str, bool]:
    return {
        "email": bool(conversion.get("email_sha256")),
        "phone": bool(conversion.get("phone_sha256")),
        "external_id": bool(conversion.get("external_id_sha256")),
        "ttclid": bool(conversion.get("ttclid")),
        "ttp": bool(conversion.get("ttp")),
        "ip_user_agent": bool(conversion.get("ip")) and bool(conversion.get("user_agent")),
    }


def coverage(conversions: Sequence[Mapping[str, Any]]) -> Coverage:
    """Match-key coverage over these (accepted) conversions, weakest keys called out."""
    counts = dict.fromkeys(MATCH_KEYS, 0)
    for c in conversions:
        for key, present in _has_keys(c).items():
            counts[key] += present
    n = len(conversions)
    shares = {k: _rate(v, n) for k, v in counts.items()}
    weakest: tuple[str, ...] = ()
    if n:
        known = {k: s for k, s in shares.items() if s is not None}
        weak = [k for k, s in known.items() if s < WEAK_SHARE]
        weakest = tuple(sorted(weak, key=lambda k: (known[k], k)))
        if not weakest:
            low = min(known.values())
            weakest = tuple(k for k, s in known.items() if s == low and s < 1.0)
    return Coverage(events=n, counts=counts, shares=shares, weakest=weakest)


@dataclass
class _Index:
    """Lookups shared by the sections of :func:`aggregate`."""

    first_form: dict[str, Mapping[str, Any]]
    form_route: dict[str, str]
    lead_consent: dict[str, Consent]
    conversion: dict[str, Mapping[str, Any]]
    accepted: dict[str, Mapping[str, Any]]


def _index(history: History, rules: Rules) -> _Index:
    first_form: dict[str, Mapping[str, Any]] = {}
    consent: dict[str, Consent] = {}
    for f in history.forms:
        lead = str(f["lead_id"])
        if lead not in first_form or f["occurred_at"] < first_form[lead]["occurred_at"]:
            first_form[lead] = f
        given = _consent(f.get("ad_consent"))
        if lead not in consent or _CONSENT_RANK[given] > _CONSENT_RANK[consent[lead]]:
            consent[lead] = given
    form_route = {
        lead: "crm" if f.get("tiktok_lead_id") and rules.crm_routing else "web"
        for lead, f in first_form.items()
    }
    conversion: dict[str, Mapping[str, Any]] = {}
    for c in history.conversions:
        conversion.setdefault(str(c["event_id"]), c)
    accepted: dict[str, Mapping[str, Any]] = {}
    for r in history.receipts:
        if r.get("outcome") != "DELIVERED":
            continue
        eid = str(r["event_id"])
        if eid not in accepted or r["decided_at"] < accepted[eid]["decided_at"]:
            accepted[eid] = r
    return _Index(first_form, form_route, consent, conversion, accepted)


def _is_status(c: Mapping[str, Any]) -> bool:
    return c.get("source_kind") == "status_change"


def _funnel(rules: Rules, ix: _Index) -> tuple[tuple[Funnel, ...], dict[str, list[float]]]:
    qualified_at: dict[str, datetime] = {}
    won: set[str] = set()
    for c in ix.conversion.values():
        if not _is_status(c):
            continue
        lead = str(c["lead_id"])
        if c["event"] == rules.purchase_event:
            won.add(lead)
        elif lead not in qualified_at or c["event_time"] < qualified_at[lead]:
            qualified_at[lead] = c["event_time"]
    rows = []
    times: dict[str, list[float]] = {route: [] for route in ROUTES}
    for route in ROUTES:
        leads = {lead for lead, r in ix.form_route.items() if r == route}
        q = {lead for lead in leads if lead in qualified_at}
        w = {lead for lead in leads if lead in won}
        rows.append(
            Funnel(
                route=route,
                forms=len(leads),
                qualified=len(q),
                won=len(w),
                qualified_rate=_rate(len(q), len(leads)),
                won_rate=_rate(len(w), len(q)),
                form_to_won_rate=_rate(len(w), len(leads)),
            )
        )
        for lead in sorted(q):
            times[route].append(_seconds(qualified_at[lead], ix.first_form[lead]["occurred_at"]))
    return tuple(rows), times


def _events(history: History, ix: _Index) -> tuple[tuple[EventRow, ...], Stats, Coverage]:
    keys: set[tuple[str, str]] = set()
    conversions: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for c in ix.conversion.values():
        k = (str(c["event"]), _route(c.get("channel")))
        keys.add(k)
        conversions[k].append(c)
    by_event: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(
        lambda: {"accepted": set(), "dead": set(), "retried": set()}
    )
    for r in history.receipts:
        k = (str(r["event"]), _route(r.get("event_source")))
        keys.add(k)
        eid = str(r["event_id"])
        slot = by_event[k]
        slot["accepted" if r.get("outcome") == "DELIVERED" else "dead"].add(eid)
        if int(r.get("attempts") or 0) > 1:
            slot["retried"].add(eid)
    rows = []
    all_latency: list[float] = []
    all_sent: list[Mapping[str, Any]] = []
    for k in sorted(keys, key=lambda ev: (ev[1], ev[0])):
        slot = by_event[k]
        latency, sent = [], []
        for eid in sorted(slot["accepted"]):
            conv = ix.conversion.get(eid)
            if conv is None:
                continue
            sent.append(conv)
            if _is_status(conv):
                latency.append(_seconds(ix.accepted[eid]["decided_at"], conv["event_time"]))
        all_latency += latency
        all_sent += sent
        rows.append(
            EventRow(
                event=k[0],
                route=k[1],
                conversions=len(conversions[k]),
                sent_without_form=sum(1 for c in conversions[k] if not c.get("matched", True)),
                accepted=len(slot["accepted"]),
                rejected=len(slot["dead"] - slot["accepted"]),
                retried=len(slot["retried"]),
                status_to_accepted=stats(latency),
                coverage=coverage(sent),
            )
        )
    return tuple(rows), stats(all_latency), coverage(all_sent)


def _status_event(change: Mapping[str, Any], rules: Rules, ix: _Index) -> str | None:
    """Map a status change with its lead's route's stage map (web unless its form says crm)."""
    route = ix.form_route.get(str(change.get("lead_id")), "web")
    stage_map = rules.stage_map_crm if route == "crm" else rules.stage_map_web
    return event_for_status(str(change.get("status") or ""), stage_map)


def _delivery(history: History, rules: Rules, ix: _Index) -> Delivery:
    dead: dict[str, Mapping[str, Any]] = {}
    retried: set[str] = set()
    for r in history.receipts:
        eid = str(r["event_id"])
        if r.get("outcome") != "DELIVERED":
            dead.setdefault(eid, r)
        if int(r.get("attempts") or 0) > 1:
            retried.add(eid)
    rejected = {eid: r for eid, r in dead.items() if eid not in ix.accepted}
    by_code = Counter(
        "no_answer" if r.get("api_code") is None else str(r["api_code"]) for r in rejected.values()
    )
    by_input = {
        "form": len(history.forms) - len({f["event_id"] for f in history.forms}),
        "booking": len(history.bookings) - len({b["booking_id"] for b in history.bookings}),
        "status_change": len(history.status_changes)
        - len({s["change_id"] for s in history.status_changes}),
    }
    # Which (lead, event) got a conversion, from which source and when.
    sent: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    by_source: set[str] = set()
    for c in ix.conversion.values():
        sent[(str(c["lead_id"]), str(c["event"]))].append(c)
        by_source.add(str(c["source_id"]))
    ledger = 0
    withheld: Counter[str] = Counter()
    ignored = 0
    changes = {str(s["change_id"]): s for s in reversed(history.status_changes)}
    for change_id, s in changes.items():
        event = _status_event(s, rules, ix)
        if event is None:
            ignored += 1
            continue
        lead = str(s["lead_id"])
        earlier = [
            c
            for c in sent.get((lead, event), [])
            if str(c["source_id"]) != change_id and c["event_time"] <= s["changed_at"]
        ]
        if earlier:
            ledger += 1
        elif change_id not in by_source and lead in ix.lead_consent:
            reason = withheld_reason(ix.lead_consent[lead], rules.consent_policy)
            if reason is not None:
                withheld[reason] += 1
    bookings = {str(b["booking_id"]): b for b in reversed(history.bookings)}
    for booking_id, b in bookings.items():
        same = ix.conversion.get(str(b["event_id"]))
        if same is not None and str(same["source_id"]) != booking_id:
            ledger += 1
        elif same is None and b.get("lead_id") and str(b["lead_id"]) in ix.lead_consent:
            reason = withheld_reason(ix.lead_consent[str(b["lead_id"])], rules.consent_policy)
            if reason is not None:
                withheld[reason] += 1
    return Delivery(
        accepted=len(ix.accepted),
        rejected=len(rejected),
        rejected_by_code=dict(sorted(by_code.items())),
        retried=len(retried),
        duplicate_request=sum(1 for r in ix.accepted.values() if r.get("api_code") == 40050),
        test_events=len({str(r["event_id"]) for r in history.receipts if r.get("test_event")}),
        receipts_without_conversion=sum(
            1 for eid in set(ix.accepted) | set(rejected) if eid not in ix.conversion
        ),
        dedup_by_input=by_input,
        dedup_by_ledger=ledger,
        resends_merged=len(history.conversions) - len(ix.conversion),
        withheld_by_consent=dict(sorted(withheld.items())),
        ignored_statuses=ignored,
    )


def _dead_letters(history: History) -> DeadLetters:
    by_reason = Counter(str(d.get("reason")) for d in history.dead_letters)
    by_topic = Counter(str(d.get("source_topic")) for d in history.dead_letters)
    days: dict[date, Counter[str]] = defaultdict(Counter)
    for d in history.dead_letters:
        at = d.get("dead_lettered_at")
        if isinstance(at, datetime):
            days[at.astimezone(UTC).date()][str(d.get("reason"))] += 1
    messages = Counter(
        (str(d.get("reason")), " ".join(str(d.get("message", "")).split())[:200])
        for d in history.dead_letters
    )
    top = sorted(messages.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_MESSAGES]
    return DeadLetters(
        total=len(history.dead_letters),
        by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_source_topic=dict(sorted(by_topic.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_day=tuple(DayCount(day, dict(sorted(days[day].items()))) for day in sorted(days)),
        top_messages=tuple(TopMessage(r, m, n) for (r, m), n in top),
    )


def tiktok_only(history: History) -> History:
    """Leave out Meta's receipts and the conversions for another destination only."""
    return replace(
        history,
        conversions=[c for c in history.conversions if c.get("destination") in (None, "tiktok")],
        receipts=[r for r in history.receipts if r.get("destination") in (None, "tiktok")],
    )


def aggregate(
    history: History,
    rules: Rules,
    since: datetime,
    until: datetime,
    records_read: Mapping[str, int] | None = None,
) -> Report:
    """Build the report from decoded records (see the module docstring for each definition).

    Args:
        history: The records of each topic within the range.
        rules: The worker's rules (stage map, purchase event, consent policy, CRM routing).
        since: Start of the range (inclusive), for the report's header.
        until: End of the range (exclusive), for the report's header.
        records_read: Records read per topic, as the reader counted them.

    Returns:
        The report.

    """
    history = tiktok_only(history)
    ix = _index(history, rules)
    funnel, qualify_times = _funnel(rules, ix)
    rows, latency, cover = _events(history, ix)
    unmatched: dict[str, Mapping[str, Any]] = {}
    for s in history.status_changes:
        if str(s["lead_id"]) not in ix.first_form:
            unmatched.setdefault(str(s["change_id"]), s)
    by_event = Counter(_status_event(s, rules, ix) or "(not mapped)" for s in unmatched.values())
    return Report(
        since=since,
        until=until,
        records_read=dict(records_read or {}),
        funnel=funnel,
        unmatched_status_changes=len(unmatched),
        unmatched_by_event=dict(sorted(by_event.items())),
        events=rows,
        status_to_accepted=latency,
        form_to_qualified=tuple(
            Distribution(route, stats(qualify_times[route]), histogram(qualify_times[route]))
            for route in ROUTES
        ),
        coverage=cover,
        delivery=_delivery(history, rules, ix),
        dead_letters=_dead_letters(history),
    )
