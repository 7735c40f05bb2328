"""Property tests: whatever the order and redelivery of a lead's inputs, each event goes once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from streams.domain.lead import expire, on_booking, on_form, on_status_change
from streams.domain.state_json import lead_state_from_json, lead_state_to_json
from streams.domain.types import (
    Booking,
    Consent,
    ConsentPolicy,
    FormSubmit,
    LeadState,
    MatchKeys,
    Outcome,
    StatusChange,
)
from tests.unit.factories import (
    BOOKING_SOURCE,
    EMAIL_SHA,
    NOW,
    SOURCE,
    make_booking,
    make_form_submit,
    make_rules,
    make_status_change,
)

STATUSES = ["qualified", "contacted", "Qualified", "sql", "won", "closed_won", "lost"]
# Several real currencies (zero-decimal JPY too), lower-case input, and an unknown code.
CURRENCIES = st.sampled_from([None, "EUR", "USD", "GBP", "JPY", "chf", "XYZ"])
KNOWN_CURRENCIES = {"EUR", "USD", "GBP", "JPY", "CHF"}


@st.composite
def status_changes(draw: st.DrawFn) -> StatusChange:
    status = draw(st.sampled_from(STATUSES))
    return make_status_change(
        change_id=f"c-{draw(st.integers(0, 5))}",
        status=status,
        value=draw(st.sampled_from([None, 0.0, 99.0, 1234.5])),
        currency=draw(CURRENCIES),
        order_id=draw(st.sampled_from([None, None, "o-1", "o-2"])),
        keys=draw(st.sampled_from([MatchKeys(email_sha256=EMAIL_SHA), MatchKeys()])),
    )


@st.composite
def bookings(draw: st.DrawFn) -> Booking:
    return make_booking(
        booking_id=f"b-{draw(st.integers(0, 3))}",
        event_id=f"pixel-{draw(st.integers(0, 3))}",
        keys=draw(st.sampled_from([MatchKeys(), MatchKeys(email_sha256=EMAIL_SHA)])),
        ip=None,
    )


@dataclass(frozen=True)
class Wait:
    """Let time pass, then run the expiry sweep."""

    minutes: int


no_form = st.one_of(status_changes(), bookings(), st.builds(Wait, st.sampled_from([1, 600])))
forms = st.builds(
    lambda n, consent: make_form_submit(event_id=f"form-{n}", ad_consent=consent),
    st.integers(0, 1),
    st.sampled_from(list(Consent)),  # GRANTED, DENIED and UNKNOWN
)
inputs = st.one_of(
    status_changes(),
    bookings(),
    forms,
    st.builds(Wait, st.sampled_from([1, 600, 1500, 3000])),
)


def flapped(step: StatusChange | Booking | Wait) -> StatusChange | Booking | Wait:
    if isinstance(step, StatusChange):
        return replace(step, change_id=f"again-{step.change_id}")
    if isinstance(step, Booking):
        return replace(step, booking_id=f"again-{step.booking_id}")
    return step


def assert_each_event_once(
    outcomes: list[Outcome], policy: ConsentPolicy = ConsentPolicy.UNLESS_DENIED
) -> None:
    conversions = [c for o in outcomes for c in o.conversions]
    ids = Counter(c.event_id for c in conversions)
    assert all(n == 1 for n in ids.values()), ids
    assert sum(c.event in ("QualifiedLead", "ApplicationApproval") for c in conversions) <= 1
    assert sum(c.event == "Purchase" and c.order_id is None for c in conversions) <= 1
    allowed = {Consent.GRANTED} if policy is ConsentPolicy.GRANTED_ONLY else set(Consent)
    for c in conversions:
        event(f"sent {c.event} consent={c.click.ad_consent} currency={c.currency}")
        assert c.click.ad_consent != "DENIED"
        assert c.click.ad_consent in allowed
        if c.event == "Purchase":
            assert c.value and c.value > 0 and c.currency in KNOWN_CURRENCIES


def run(
    steps: list[StatusChange | Booking | FormSubmit | Wait],
    policy: ConsentPolicy,
    microseconds: int,
) -> tuple[LeadState | None, list[Outcome]]:
    rules = make_rules(consent_policy=policy)
    state: LeadState | None = None
    now = NOW + timedelta(microseconds=microseconds)
    outcomes: list[Outcome] = []
    for step in steps:
        now += timedelta(seconds=1)
        if isinstance(step, Wait):
            now += timedelta(minutes=step.minutes)
            if state is None:
                continue
            outcome = expire(state, rules, now)
        elif isinstance(step, FormSubmit):
            outcome = on_form(state, step, rules, now)
        elif isinstance(step, Booking):
            outcome = on_booking(state, step, BOOKING_SOURCE, rules, now)
        else:
            outcome = on_status_change(state, step, SOURCE, rules, now)
        outcomes.append(outcome)
        state = outcome.state
        if state is not None:  # what the table stores is what the next step gets
            assert lead_state_from_json(lead_state_to_json(state)) == state
    return state, outcomes


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(inputs, max_size=25),
    policy=st.sampled_from(list(ConsentPolicy)),
    microseconds=st.integers(0, 999_999),
)
def test_each_event_id_is_emitted_at_most_once(
    steps: list[StatusChange | Booking | FormSubmit | Wait],
    policy: ConsentPolicy,
    microseconds: int,
) -> None:
    _, outcomes = run(steps, policy, microseconds)
    assert_each_event_once(outcomes, policy)


@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(no_form, min_size=1, max_size=8),
    waited=st.sampled_from([Wait(1), Wait(1500)]),
    form=forms,
    after=st.lists(inputs, max_size=10),
)
def test_inputs_sent_without_their_form_are_not_sent_again_with_it(
    before: list[StatusChange | Booking | Wait],
    waited: Wait,
    form: FormSubmit,
    after: list[StatusChange | Booking | FormSubmit | Wait],
) -> None:
    again = [flapped(step) for step in before]  # the same stages, reported anew
    steps = [*before, waited, form, *after, *again]
    _, outcomes = run(steps, ConsentPolicy.UNLESS_DENIED, 0)
    assert_each_event_once(outcomes)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(inputs, max_size=20), microseconds=st.integers(0, 999_999))
def test_replaying_all_inputs_emits_nothing_new(
    steps: list[StatusChange | Booking | FormSubmit | Wait], microseconds: int
) -> None:
    replayed = steps + [s for s in steps if not isinstance(s, Wait)]
    _, first = run(steps, ConsentPolicy.UNLESS_DENIED, microseconds)
    _, both = run(replayed, ConsentPolicy.UNLESS_DENIED, microseconds)
    sent_first = [c.event_id for o in first for c in o.conversions]
    sent_both = [c.event_id for o in both for c in o.conversions]
    assert sent_both == sent_first
