"""The retry plan: verdict x backoffs x horizon -> what next, without asyncio or a clock."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.retry import (
    BatchVerdict,
    CircuitChange,
    Plan,
    RetryPolicy,
    RetryState,
    Step,
    Verdict,
    backoff_seconds,
    next_step,
)
from tests.unit.factories import NOW

POLICY = RetryPolicy(
    horizon=timedelta(seconds=60),
    backoff_initial=1.0,
    backoff_max=60.0,
    probe_interval=30.0,
    unknown_attempts=3,
)
ALL = (0, 1, 2, 3)
HALVES = ((0, 1), (2, 3))
# Where the retry horizon stands when the answer arrives: no retryable answer before it, one
# 10 s ago (inside the 60 s horizon), or one 60 s ago (the horizon is over).
SINCE = {"fresh": None, "within": NOW - timedelta(seconds=10), "past": NOW - timedelta(seconds=60)}
# The backoff at rand=0 with a 1 s initial delay: half of 2**backoffs seconds.
WAIT = {0: 0.5, 3: 4.0}

S, F, D, L, P = Step.SEND, Step.FINISH, Step.SPLIT, Step.SLEEP, Step.PAUSE
OPEN, CLOSE, KEEP = CircuitChange.OPEN, CircuitChange.CLOSE, CircuitChange.KEEP

# verdict, horizon -> step, waits, circuit, resend, finished (one letter per event: d delivered,
# r api_rejected, x retry_exhausted, . not decided), and the horizon's start afterwards.
# ``waits`` is the wait after 0 and after 3 earlier backoffs.
TABLE = [
    *[(Verdict.DELIVERED, h, F, (0, 0), CLOSE, (), "dddd", None) for h in SINCE],
    *[(Verdict.REJECTED, h, S, (0, 0), CLOSE, ((0, 2, 3),), ".r..", None) for h in SINCE],
    *[(Verdict.SPLIT, h, D, (0, 0), KEEP, HALVES, "....", None) for h in SINCE],
    *[(Verdict.BISECT, h, D, (0, 0), CLOSE, HALVES, "....", None) for h in SINCE],
    *[(Verdict.AUTH, h, P, (30, 30), OPEN, (ALL,), "....", None) for h in SINCE],
    *[(Verdict.CONFIG, h, P, (30, 30), OPEN, (ALL,), "....", None) for h in SINCE],
    *[(Verdict.UNKNOWN, h, L, (0.5, 4), KEEP, (ALL,), "....", None) for h in SINCE],
    (Verdict.RETRY, "fresh", L, (0.5, 4), KEEP, (ALL,), "....", NOW),
    (Verdict.RETRY, "within", L, (0.5, 4), KEEP, (ALL,), "....", SINCE["within"]),
    (Verdict.RETRY, "past", F, (0, 0), KEEP, (), "xxxx", SINCE["past"]),
]
LETTER = {"delivered": "d", "api_rejected": "r", "retry_exhausted": "x"}


def verdict(
    kind: Verdict, code: int | None = 1, rejected: Mapping[int, str] | None = None
) -> BatchVerdict:
    if rejected is None:
        rejected = {1: "data.1.value: bad"} if kind is Verdict.REJECTED else {}
    return BatchVerdict(kind, code, "the message", rejected)


def letters(plan: Plan, size: int = 4) -> str:
    out = ["."] * size
    for final in plan.finished:
        assert out[final.index] == "."  # no event is finished twice
        out[final.index] = LETTER[final.reason]
    return "".join(out)


@pytest.mark.parametrize("backoffs", [0, 3])
@pytest.mark.parametrize(
    ("kind", "horizon", "step", "waits", "circuit", "resend", "finished", "since"),
    TABLE,
    ids=[f"{row[0].value}-{row[1]}" for row in TABLE],
)
def test_what_follows_each_verdict(
    kind: Verdict,
    horizon: str,
    step: Step,
    waits: tuple[float, float],
    circuit: CircuitChange,
    resend: tuple[tuple[int, ...], ...],
    finished: str,
    since: object,
    backoffs: int,
) -> None:
    state = RetryState(backoffs=backoffs, retrying_since=SINCE[horizon])
    plan = next_step(state, verdict(kind), size=4, attempts=2, now=NOW, rand=0.0, policy=POLICY)

    assert (plan.step, plan.circuit, plan.resend, letters(plan)) == (
        step,
        circuit,
        resend,
        finished,
    )
    assert plan.wait == waits[0 if backoffs == 0 else 1]
    # The backoff exponent: reset by an answer that decided events, raised by each backoff.
    decided = kind in (Verdict.DELIVERED, Verdict.REJECTED)
    expected_backoffs = 0 if decided else backoffs + (step is Step.SLEEP)
    assert plan.state == RetryState(
        backoffs=expected_backoffs,
        unknown_tries=1 if kind is Verdict.UNKNOWN else 0,
        retrying_since=since,
    )


def test_the_table_covers_every_verdict_and_horizon() -> None:
    assert {(row[0], row[1]) for row in TABLE} == {(k, h) for k in Verdict for h in SINCE}
    assert len(TABLE) == len(Verdict) * len(SINCE)


# --- messages and reasons of final outcomes -----------------------------------------------------


def test_delivered_events_carry_the_answer_and_named_ones_its_message_about_them() -> None:
    partial = verdict(Verdict.DELIVERED, 20001, {2: "data.2.currency: must be ISO 4217"})
    plan = next_step(RetryState(), partial, size=4, attempts=1, now=NOW, rand=0.5, policy=POLICY)

    assert plan.step is Step.FINISH
    assert [(f.index, f.delivered, f.reason, f.message) for f in plan.finished] == [
        (0, True, "delivered", "the message"),
        (1, True, "delivered", "the message"),
        (2, False, "api_rejected", "data.2.currency: must be ISO 4217"),
        (3, True, "delivered", "the message"),
    ]


def test_a_rejection_naming_every_event_resends_nothing() -> None:
    every = verdict(Verdict.REJECTED, 40002, {0: "a", 1: "b"})
    plan = next_step(RetryState(), every, size=2, attempts=1, now=NOW, rand=0.5, policy=POLICY)
    assert (plan.step, plan.resend, letters(plan, 2)) == (Step.FINISH, (), "rr")
    assert [f.message for f in plan.finished] == ["a", "b"]


@pytest.mark.parametrize(
    ("kind", "circuit", "message"),
    [
        (Verdict.SPLIT, KEEP, "rejected as too large even alone: the message"),
        (Verdict.BISECT, CLOSE, "the message"),
    ],
)
def test_one_event_that_cannot_be_halved_is_rejected_not_looped(
    kind: Verdict, circuit: CircuitChange, message: str
) -> None:
    plan = next_step(
        RetryState(), verdict(kind), size=1, attempts=1, now=NOW, rand=0.5, policy=POLICY
    )
    assert (plan.step, plan.resend, plan.circuit) == (Step.FINISH, (), circuit)
    [final] = plan.finished
    assert (final.index, final.delivered, final.reason, final.message) == (
        0,
        False,
        "api_rejected",
        message,
    )


@pytest.mark.parametrize(
    ("size", "halves"),
    [(2, ((0,), (1,))), (3, ((0,), (1, 2))), (5, ((0, 1), (2, 3, 4)))],
)
def test_halves_keep_the_order_and_every_event(
    size: int, halves: tuple[tuple[int, ...], ...]
) -> None:
    plan = next_step(
        RetryState(),
        verdict(Verdict.SPLIT),
        size=size,
        attempts=1,
        now=NOW,
        rand=0.5,
        policy=POLICY,
    )
    assert plan.resend == halves


def test_retry_at_the_horizon_gives_up_with_the_attempts_in_the_message() -> None:
    state = RetryState(backoffs=4, retrying_since=NOW - POLICY.horizon)
    busy = verdict(Verdict.RETRY, 50000)
    plan = next_step(state, busy, size=2, attempts=7, now=NOW, rand=0.5, policy=POLICY)

    assert plan.step is Step.FINISH
    assert {(f.reason, f.message) for f in plan.finished} == {
        ("retry_exhausted", "gave up after 7 attempts over the retry horizon: the message")
    }
    just_inside = dataclasses.replace(
        state, retrying_since=NOW - POLICY.horizon + timedelta(milliseconds=1)
    )
    assert next_step(
        just_inside, busy, size=2, attempts=7, now=NOW, rand=0.5, policy=POLICY
    ).step is (Step.SLEEP)


def test_a_zero_horizon_gives_up_on_the_first_retryable_answer() -> None:
    policy = dataclasses.replace(POLICY, horizon=timedelta(0))
    plan = next_step(
        RetryState(), verdict(Verdict.RETRY), size=1, attempts=1, now=NOW, rand=0.5, policy=policy
    )
    assert (plan.step, letters(plan, 1)) == (Step.FINISH, "x")
    assert (
        plan.finished[0].message == "gave up after 1 attempts over the retry horizon: the message"
    )


@pytest.mark.parametrize(
    ("tries_before", "step", "tries_after"),
    [(0, Step.SLEEP, 1), (1, Step.SLEEP, 2), (2, Step.FINISH, 0)],
)
def test_an_unknown_code_is_retried_then_rejected_with_the_code(
    tries_before: int, step: Step, tries_after: int
) -> None:
    state = RetryState(backoffs=tries_before, unknown_tries=tries_before)
    unknown = verdict(Verdict.UNKNOWN, 41234)
    plan = next_step(
        state, unknown, size=2, attempts=tries_before + 1, now=NOW, rand=0.0, policy=POLICY
    )

    assert (plan.step, plan.state.unknown_tries) == (step, tries_after)
    if step is Step.FINISH:
        assert (plan.resend, plan.wait, letters(plan, 2)) == ((), 0.0, "rr")
        assert (
            plan.finished[0].message
            == "unknown Events API code 41234 after 3 attempts: the message"
        )
        assert plan.state.backoffs == tries_before  # giving up is not a backoff
    else:
        assert plan.wait == backoff_seconds(tries_before, 1.0, 60.0, 0.0)


def test_the_api_name_in_messages_comes_from_the_policy() -> None:
    policy = dataclasses.replace(POLICY, api="Conversions API", unknown_attempts=1)
    plan = next_step(
        RetryState(),
        verdict(Verdict.UNKNOWN, 9),
        size=1,
        attempts=1,
        now=NOW,
        rand=0.0,
        policy=policy,
    )
    assert (
        plan.finished[0].message == "unknown Conversions API code 9 after 1 attempts: the message"
    )


def test_a_different_answer_ends_a_run_of_unknown_codes() -> None:
    state = RetryState(unknown_tries=2)
    plan = next_step(
        state, verdict(Verdict.RETRY), size=1, attempts=3, now=NOW, rand=0.0, policy=POLICY
    )
    assert plan.state.unknown_tries == 0
    plan = next_step(
        plan.state, verdict(Verdict.UNKNOWN), size=1, attempts=4, now=NOW, rand=0.0, policy=POLICY
    )
    assert (plan.step, plan.state.unknown_tries) == (Step.SLEEP, 1)


# --- whole conversations, driven by a pure loop ---------------------------------------------------


def drive(
    answers: list[BatchVerdict] | None,
    size: int,
    *,
    bad: frozenset[int] = frozenset(),
    step_s: float = 0.0,
) -> tuple[dict[int, str], list[tuple[int, ...]], list[float]]:
    """Execute plans like the delivery shell does, with scripted answers and a fake clock.

    Without a script, a request carrying a ``bad`` event is rejected without naming it and any
    other request is delivered. Returns each event's final reason, the requests sent, the waits.
    """
    work: deque[tuple[int, ...]] = deque([tuple(range(size))])
    attempts = dict.fromkeys(range(size), 0)
    outcome: dict[int, str] = {}
    sent: list[tuple[int, ...]] = []
    waits: list[float] = []
    state, now = RetryState(), NOW
    script = list(answers or [])
    while work:
        request = work.popleft()
        sent.append(request)
        assert len(sent) <= 100, "the plan loops"  # fail fast rather than at pytest's timeout
        for ev in request:
            attempts[ev] += 1
        if answers is not None:
            answer = script.pop(0) if script else verdict(Verdict.DELIVERED, 0)
        elif bad & set(request):
            answer = (
                verdict(Verdict.BISECT, 40002)
                if len(request) > 1
                else verdict(Verdict.REJECTED, 40002, {0: "bad"})
            )
        else:
            answer = verdict(Verdict.DELIVERED, 0)
        plan = next_step(
            state,
            answer,
            size=len(request),
            attempts=attempts[request[0]],
            now=now,
            rand=0.0,
            policy=POLICY,
        )
        state = plan.state
        for final in plan.finished:
            outcome[request[final.index]] = final.reason
        waits.append(plan.wait)
        now += timedelta(seconds=plan.wait + step_s)
        work.extendleft(reversed([tuple(request[i] for i in idx) for idx in plan.resend]))
    return outcome, sent, [w for w in waits if w]


def test_bisecting_isolates_the_bad_events_and_delivers_the_others() -> None:
    outcome, sent, waits = drive(None, 8, bad=frozenset({2, 5}))
    assert outcome == {i: "api_rejected" if i in (2, 5) else "delivered" for i in range(8)}
    assert (2,) in sent and (5,) in sent
    assert len(sent) <= 2 * 8
    assert waits == []


def test_time_paused_by_the_circuit_is_not_charged_to_the_horizon() -> None:
    busy, auth = verdict(Verdict.RETRY, 50000), verdict(Verdict.AUTH, 40105)
    outcome, sent, waits = drive([busy, auth, auth, auth, busy], 1)
    assert outcome == {0: "delivered"}
    assert waits == [0.5, 30.0, 30.0, 30.0, 1.0]  # the backoff exponent is not reset by pausing
    assert len(sent) == 6


def test_retrying_gives_up_once_the_horizon_has_passed() -> None:
    busy = verdict(Verdict.RETRY, 50000)
    outcome, sent, waits = drive([busy] * 20, 2)
    assert outcome == {0: "retry_exhausted", 1: "retry_exhausted"}
    # 0.5 + 1 + 2 + 4 + 8 + 16 = 31.5 s < 60 s; then 30 s more (capped): 61.5 s >= 60 s.
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert len(sent) == 8


def test_an_accepted_answer_resets_the_backoff() -> None:
    busy = verdict(Verdict.RETRY, 50000)
    named = verdict(Verdict.REJECTED, 40002, {0: "bad"})
    _, _, waits = drive([busy, busy, named, busy], 3)
    assert waits == [0.5, 1.0, 0.5]


# --- invariants ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(Verdict)),
    size=st.integers(1, 9),
    named=st.sets(st.integers(0, 8)),
    backoffs=st.integers(0, 40),
    unknown_tries=st.integers(0, 2),
    since_s=st.none() | st.integers(0, 120),
    rand=st.floats(0.0, 0.999_999),
)
def test_every_event_is_either_finished_or_resent_exactly_once(
    kind: Verdict,
    size: int,
    named: set[int],
    backoffs: int,
    unknown_tries: int,
    since_s: int | None,
    rand: float,
) -> None:
    rejected = (
        {i: f"bad {i}" for i in named if i < size}
        if kind in (Verdict.DELIVERED, Verdict.REJECTED)
        else {}
    )
    if kind is Verdict.REJECTED and not rejected:
        rejected = {0: "bad 0"}
    since = None if since_s is None else NOW - timedelta(seconds=since_s)
    state = RetryState(backoffs, unknown_tries, since)
    plan = next_step(
        state, verdict(kind, 1, rejected), size=size, attempts=1, now=NOW, rand=rand, policy=POLICY
    )

    done = [f.index for f in plan.finished]
    again = [i for request in plan.resend for i in request]
    assert sorted(done + again) == list(range(size))
    assert all(plan.resend)  # no empty request
    assert (plan.step is Step.FINISH) == (not plan.resend)
    assert 0 <= plan.wait <= max(POLICY.backoff_max, POLICY.probe_interval)
    assert (plan.wait > 0) == (plan.step in (Step.SLEEP, Step.PAUSE))
    assert all(f.delivered == (f.reason == "delivered") for f in plan.finished)


def test_the_plan_is_a_frozen_value() -> None:
    plan = next_step(
        RetryState(),
        verdict(Verdict.DELIVERED),
        size=1,
        attempts=1,
        now=NOW,
        rand=0.0,
        policy=POLICY,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.step = Step.SEND  # type: ignore[misc]


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_grows_exponentially() -> None:
    values = [backoff_seconds(a, 0.5, 60.0, 1.0) for a in range(6)]
    assert values == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_backoff_is_capped() -> None:
    assert backoff_seconds(7, 0.5, 60.0, 1.0) == 60.0
    assert backoff_seconds(50, 0.5, 60.0, 1.0) == 60.0
    assert backoff_seconds(10_000, 0.5, 60.0, 0.0) == 30.0  # no overflow on huge attempts


@pytest.mark.parametrize("attempt", [0, 1, 3, 8, 100])
@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999_999])
def test_backoff_jitter_is_between_half_and_full(attempt: int, rand: float) -> None:
    full = min(60.0, 0.5 * 2**attempt)
    value = backoff_seconds(attempt, 0.5, 60.0, rand)
    assert 0.5 * full <= value <= full
    assert value == pytest.approx(full * (0.5 + rand / 2))


def test_backoff_jitter_bounds_exactly() -> None:
    assert backoff_seconds(2, 1.0, 60.0, 0.0) == 2.0
    assert backoff_seconds(2, 1.0, 60.0, 1.0) == 4.0
