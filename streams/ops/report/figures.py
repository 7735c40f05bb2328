"""The lead-quality report's figures: plain frozen values and the statistics behind them (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

ROUTES = ("web", "crm")
MATCH_KEYS = ("email", "phone", "external_id", "ttclid", "ttp", "ip_user_agent")
WEAK_SHARE = 0.5
HISTOGRAM_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1h", 3600.0),
    ("1-6h", 6 * 3600.0),
    ("6-24h", 24 * 3600.0),
    ("1-3d", 3 * 86400.0),
    ("3-7d", 7 * 86400.0),
    ("7-30d", 30 * 86400.0),
    ("30d+", math.inf),
)
TOP_MESSAGES = 10
NOTES = (
    "Withheld by consent is derived from the input topics for leads whose form is in range; "
    "inputs withheld after their wait expired (consent unknown) are counted only in the "
    'worker\'s metrics (leadstream_core_outcomes_total{outcome=~"withheld_.*"}).',
    "Retries are counted per event from the receipts' attempts; retries of batches still in "
    "flight, circuit-open time and request latency are metrics only.",
    "Inputs the worker deduplicated by id beyond the range, or a ledger entry older than the "
    "range, cannot be seen here: figures cover records inside the range only.",
)


@dataclass(frozen=True, slots=True)
class History:
    """Decoded records of each topic, in topic order, already limited to the time range."""

    forms: Sequence[Mapping[str, Any]] = ()
    bookings: Sequence[Mapping[str, Any]] = ()
    status_changes: Sequence[Mapping[str, Any]] = ()
    conversions: Sequence[Mapping[str, Any]] = ()
    receipts: Sequence[Mapping[str, Any]] = ()
    dead_letters: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class Stats:
    """Count and nearest-rank percentiles of durations, in seconds (None when empty)."""

    count: int
    p50: float | None
    p95: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Funnel:
    """Forms -> qualified -> won for one route."""

    route: str
    forms: int
    qualified: int
    won: int
    qualified_rate: float | None
    won_rate: float | None
    form_to_won_rate: float | None


@dataclass(frozen=True, slots=True)
class Coverage:
    """Share of accepted events carrying each match key."""

    events: int
    counts: Mapping[str, int]
    shares: Mapping[str, float | None]
    weakest: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EventRow:
    """Figures for one event name on one route."""

    event: str
    route: str
    conversions: int
    sent_without_form: int
    accepted: int
    rejected: int
    retried: int
    status_to_accepted: Stats
    coverage: Coverage


@dataclass(frozen=True, slots=True)
class Bucket:
    """One histogram bar: durations below ``upper_seconds`` (None: no upper bound)."""

    label: str
    upper_seconds: float | None
    count: int


@dataclass(frozen=True, slots=True)
class Distribution:
    """Form-to-qualification times of one route: summary and histogram."""

    route: str
    stats: Stats
    histogram: tuple[Bucket, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Outcomes at the destination and what was deduplicated or withheld on the way."""

    accepted: int
    rejected: int
    rejected_by_code: Mapping[str, int]
    retried: int
    duplicate_request: int
    test_events: int
    receipts_without_conversion: int
    dedup_by_input: Mapping[str, int]
    dedup_by_ledger: int
    resends_merged: int
    withheld_by_consent: Mapping[str, int]
    ignored_statuses: int


@dataclass(frozen=True, slots=True)
class DayCount:
    """Dead letters of one UTC day, by reason."""

    day: date
    by_reason: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class TopMessage:
    """A frequent dead-letter message."""

    reason: str
    message: str
    count: int


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """Dead letters in range by reason, source topic, day, and the top messages."""

    total: int
    by_reason: Mapping[str, int]
    by_source_topic: Mapping[str, int]
    by_day: tuple[DayCount, ...]
    top_messages: tuple[TopMessage, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """The whole lead-quality report for one time range."""

    since: datetime
    until: datetime
    records_read: Mapping[str, int]
    funnel: tuple[Funnel, ...]
    unmatched_status_changes: int
    unmatched_by_event: Mapping[str, int]
    events: tuple[EventRow, ...]
    status_to_accepted: Stats
    form_to_qualified: tuple[Distribution, ...]
    coverage: Coverage
    delivery: Delivery
    dead_letters: DeadLetters
    notes: tuple[str, ...] = field(default=NOTES)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def stats(values: Sequence[float]) -> Stats:
    """Summarise durations in seconds."""
    return Stats(
        count=len(values),
        p50=percentile(values, 0.5),
        p95=percentile(values, 0.95),
        max=max(values) if values else None,
    )


def histogram(values: Iterable[float]) -> tuple[Bucket, ...]:
    """Count durations into :data:`HISTOGRAM_BUCKETS` (a negative duration counts as the first)."""
    counts = [0] * len(HISTOGRAM_BUCKETS)
    for v in values:
        for i, (_, upper) in enumerate(HISTOGRAM_BUCKETS):
            if v < upper:
                counts[i] += 1
                break
    return tuple(
        Bucket(label, None if math.isinf(upper) else upper, n)
        for (label, upper), n in zip(HISTOGRAM_BUCKETS, counts, strict=True)
    )
