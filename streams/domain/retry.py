"""The retry plan: given an answer's verdict and the time, what next (pure, any destination).

A destination's classifier (``streams.tiktok.verdicts.classify`` for the TikTok Events API) turns
an answer into a :class:`BatchVerdict`; :func:`next_step` turns the verdict into a :class:`Plan`
for the request that got it: send, split, sleep, pause or finish, which events have a final
outcome, which requests to send next, how long to wait first, and whether the destination's
circuit opens or closes. The delivery shell only executes the plan (HTTP, sleeping, logs,
metrics, receipts), so a second destination reuses it with its own classifier and its own
circuit.

The rules (domain.md §7):

- ``DELIVERED`` and ``REJECTED`` finish the events the answer decides; with ``REJECTED`` the
  events it does not name are sent again at once (:attr:`Step.SEND`);
- ``SPLIT`` and ``BISECT`` halve the request; a request of one event is finished as rejected;
- ``AUTH`` and ``CONFIG`` open the circuit and resend the same request after a probe interval
  (:attr:`Step.PAUSE`); nothing is finished while the destination is paused;
- ``RETRY`` backs off (:attr:`Step.SLEEP`) until the retry horizon, counted from the first
  retryable answer since an answer that was not retryable, so time paused by the circuit is not
  charged to it; then the request is finished as ``retry_exhausted``;
- ``UNKNOWN`` backs off too, and is finished as rejected after
  :attr:`RetryPolicy.unknown_attempts` answers in a row.

The backoff exponent counts the backoffs since the last answer that decided events
(``DELIVERED``/``REJECTED``); randomness is an argument (``rand``), like the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

UNKNOWN_CODE_ATTEMPTS = 3  # tries of a request answered with an unknown code


class Verdict(StrEnum):
    """What to do with a request's events (the kinds a destination's classifier returns)."""

    DELIVERED = "delivered"  # accepted (or some rejected, see BatchVerdict.rejected)
    RETRY = "retry"  # transient: resend the same events after a backoff
    AUTH = "auth"  # credentials or permission: pause the destination, keep the events
    CONFIG = "config"  # wrong URL, token or permission (HTTP 401/403/404, no envelope): pause too
    SPLIT = "split"  # too many events (or bytes) in one request: halve and resend
    REJECTED = "rejected"  # the named events are permanently invalid; resend the others
    BISECT = "bisect"  # a rejection naming no event: halve until the bad events are alone
    UNKNOWN = "unknown"  # an unknown error code: retry a few times, then dead-letter (code kept)


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    """The classification of one answer for a batch of ``n`` events.

    ``rejected`` maps an event's index in the batch to the API's message about it. With
    ``REJECTED`` the events not named were not accepted and must be sent again; with
    ``DELIVERED`` they were accepted.
    """

    verdict: Verdict
    code: int | None
    message: str
    rejected: Mapping[int, str] = field(default_factory=dict)


class Step(StrEnum):
    """What the shell does after an answer."""

    SEND = "send"  # send the plan's requests now (the events a rejection did not name)
    SPLIT = "split"  # send the two halves of the request now
    SLEEP = "sleep"  # back off for ``wait`` seconds, then resend the request
    PAUSE = "pause"  # the circuit is open: wait a probe interval, then resend (a probe)
    FINISH = "finish"  # every event of the request has its final outcome; nothing to resend


class CircuitChange(StrEnum):
    """What the answer means for the destination's circuit."""

    OPEN = "open"  # auth or configuration error: pause the destination
    CLOSE = "close"  # the API read the events, so the credentials work: resume
    KEEP = "keep"  # the answer says nothing about the credentials


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The settings the plan follows (from ``Settings``; the ``api`` name is for messages)."""

    horizon: timedelta
    backoff_initial: float
    backoff_max: float
    probe_interval: float
    unknown_attempts: int = UNKNOWN_CODE_ATTEMPTS
    api: str = "Events API"


@dataclass(frozen=True, slots=True)
class RetryState:
    """What the plan remembers between the answers of one group of requests."""

    backoffs: int = 0  # backoffs since the last answer that decided events: the exponent
    unknown_tries: int = 0  # UNKNOWN answers in a row
    retrying_since: datetime | None = None  # the first RETRY answer in a row: the horizon's start


@dataclass(frozen=True, slots=True)
class Final:
    """The final outcome of the event at ``index`` in the request."""

    index: int
    delivered: bool
    reason: str  # "delivered", "api_rejected" or "retry_exhausted" (the dead letter's reason)
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do after one answer.

    ``finished`` holds the events decided now, in index order; ``resend`` the requests to send
    next, in order, each as indices into the answered request; ``wait`` the seconds to wait
    before sending them; ``state`` the plan's memory for the next answer.
    """

    step: Step
    finished: tuple[Final, ...]
    resend: tuple[tuple[int, ...], ...]
    wait: float
    circuit: CircuitChange
    state: RetryState


def backoff_seconds(attempt: int, initial: float, maximum: float, rand: float) -> float:
    """Exponential backoff with full jitter: ``rand`` in [0, 1) scales the capped exponential."""
    return min(maximum, initial * (2 ** min(attempt, 30))) * (0.5 + rand / 2)


def next_step(
    state: RetryState,
    verdict: BatchVerdict,
    *,
    size: int,
    attempts: int,
    now: datetime,
    rand: float,
    policy: RetryPolicy,
) -> Plan:
    """Plan what follows ``verdict``, the answer to a request of ``size`` events.

    Args:
        state: the plan's memory from the previous answer of this group (``RetryState()`` first).
        verdict: the classified answer.
        size: how many events the request carried (at least one).
        attempts: how many times these events have been sent, this request included.
        now: the current time; the retry horizon is measured with it.
        rand: a random number in [0, 1) for the backoff's jitter.
        policy: horizon, backoff, probe interval and the unknown-code limit.

    """
    kind = verdict.verdict
    every = tuple(range(size))
    # A different answer ends a run of retryable (or unknown) ones: time paused by the circuit,
    # or spent splitting, is not charged to the retry horizon.
    state = replace(
        state,
        retrying_since=state.retrying_since if kind is Verdict.RETRY else None,
        unknown_tries=state.unknown_tries if kind is Verdict.UNKNOWN else 0,
    )
    if kind in (Verdict.DELIVERED, Verdict.REJECTED):
        return _decided(verdict, every, replace(state, backoffs=0))
    if kind in (Verdict.SPLIT, Verdict.BISECT):
        return _halved(verdict, every, state)
    if kind in (Verdict.AUTH, Verdict.CONFIG):
        return Plan(Step.PAUSE, (), (every,), policy.probe_interval, CircuitChange.OPEN, state)
    if kind is Verdict.UNKNOWN:
        tries = state.unknown_tries + 1
        if tries >= policy.unknown_attempts:
            msg = f"unknown {policy.api} code {verdict.code} after {tries} attempts: "
            finished = _all(every, "api_rejected", msg + verdict.message)
            return Plan(
                Step.FINISH, finished, (), 0.0, CircuitChange.KEEP, replace(state, unknown_tries=0)
            )
        return _back_off(every, replace(state, unknown_tries=tries), rand, policy)
    since = state.retrying_since or now  # RETRY
    state = replace(state, retrying_since=since)
    if now - since >= policy.horizon:
        msg = f"gave up after {attempts} attempts over the retry horizon: {verdict.message}"
        finished = _all(every, "retry_exhausted", msg)
        return Plan(Step.FINISH, finished, (), 0.0, CircuitChange.KEEP, state)
    return _back_off(every, state, rand, policy)


def _decided(verdict: BatchVerdict, every: tuple[int, ...], state: RetryState) -> Plan:
    """DELIVERED or REJECTED: the named events are rejected, the others delivered or resent."""
    finished: list[Final] = []
    again: list[int] = []
    for idx in every:
        if idx in verdict.rejected:
            finished.append(Final(idx, False, "api_rejected", verdict.rejected[idx]))
        elif verdict.verdict is Verdict.DELIVERED:
            finished.append(Final(idx, True, "delivered", verdict.message))
        else:
            again.append(idx)
    if again:
        return Plan(Step.SEND, tuple(finished), (tuple(again),), 0.0, CircuitChange.CLOSE, state)
    return Plan(Step.FINISH, tuple(finished), (), 0.0, CircuitChange.CLOSE, state)


def _halved(verdict: BatchVerdict, every: tuple[int, ...], state: RetryState) -> Plan:
    """SPLIT or BISECT: halve the request; one event alone cannot be split, it is rejected."""
    # The API read the events of a bisected request (it judged them), not those of a split one.
    circuit = CircuitChange.CLOSE if verdict.verdict is Verdict.BISECT else CircuitChange.KEEP
    if len(every) == 1:
        msg = (
            f"rejected as too large even alone: {verdict.message}"
            if verdict.verdict is Verdict.SPLIT
            else verdict.message
        )
        return Plan(Step.FINISH, _all(every, "api_rejected", msg), (), 0.0, circuit, state)
    half = len(every) // 2
    return Plan(Step.SPLIT, (), (every[:half], every[half:]), 0.0, circuit, state)


def _back_off(every: tuple[int, ...], state: RetryState, rand: float, policy: RetryPolicy) -> Plan:
    """Resend the whole request after an exponential backoff with jitter."""
    wait = backoff_seconds(state.backoffs, policy.backoff_initial, policy.backoff_max, rand)
    state = replace(state, backoffs=state.backoffs + 1)
    return Plan(Step.SLEEP, (), (every,), wait, CircuitChange.KEEP, state)


def _all(every: tuple[int, ...], reason: str, message: str) -> tuple[Final, ...]:
    return tuple(Final(idx, False, reason, message) for idx in every)
