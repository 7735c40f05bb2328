"""Ledger, counter and fault helpers the local API sandboxes share (no HTTP, no protocol rules).

Standard library only, and nothing from the rest of ``streams``: the TikTok and the Meta sandbox
import it and stay standalone with respect to the client code they test.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol, cast


@dataclass(slots=True)
class Stats:
    """Counters every sandbox keeps; the per-event ones carry their event_id for ``?prefix=``."""

    requests: int = 0
    connections: int = 0
    requests_by_code: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    # (event_id, counter name) per event, so counters can be filtered by an event_id prefix;
    # (event_id, request number) per event received.
    by_event: list[tuple[str, str]] = field(default_factory=list)
    received: list[tuple[str, int]] = field(default_factory=list)
    request_number: int = 0

    def note_request(self, ids: list[str]) -> None:
        """Give a request with events the next number and remember which events it carried."""
        number = self.request_number = self.request_number + 1
        self.received.extend((event_id, number) for event_id in ids)

    def event_counts(self, prefix: str) -> tuple[Counter[str], Counter[int], dict[str, int]]:
        """Return the per-event counters, events per request and rejections by code for ``prefix``.

        Only events whose event_id starts with ``prefix`` count ("" counts them all).
        """
        counts = Counter(name for eid, name in self.by_event if eid.startswith(prefix))
        per_request = Counter(n for eid, n in self.received if eid.startswith(prefix))
        rejected = {
            name.removeprefix("rejected:"): n
            for name, n in counts.items()
            if name.startswith("rejected:")
        }
        return counts, per_request, rejected

    def counters_json(self, prefix: str, tallies: tuple[str, ...]) -> dict[str, Any]:
        """Return the counters as ``GET /_sandbox/stats`` shows them, for ``prefix``.

        Request-level counters (requests, connections, requests_by_code, faults) have no
        event_id and stay session-global; the per-event ones, and max_events_per_request, count
        only events whose event_id starts with ``prefix``.

        Args:
            prefix: The event_id prefix ("" counts every event).
            tallies: The live and test per-event counters the sandbox keeps, e.g. ``accepted``.

        """
        counts, per_request, rejected = self.event_counts(prefix)
        result: dict[str, Any] = {
            "requests": self.requests,
            "connections": self.connections,
            "requests_by_code": dict(self.requests_by_code),
            "events_received": per_request.total(),
        }
        result.update((name, counts[f"live:{name}"]) for name in tallies)
        result["rejected"] = rejected
        result["rejected_total"] = sum(rejected.values())
        result["test"] = {name: counts[f"test:{name}"] for name in tallies}
        result["faults_injected"] = sum(self.faults.values())
        result["faults_by_kind"] = dict(self.faults)
        result["max_events_per_request"] = max(per_request.values(), default=0)
        return result


class _FaultSettings(Protocol):
    @property
    def seed(self) -> int | None: ...

    def to_json(self) -> dict[str, Any]: ...


class EngineCore:
    """The lock, stop event, ledger, records, counters and fault setting of a sandbox engine.

    Subclasses narrow the types of ``_faults``, ``_ledger`` and ``_stats`` in their class body.
    """

    _faults: _FaultSettings
    _ledger: dict[Any, Any]
    _stats: Stats

    def __init__(self, faults: _FaultSettings, expired_tokens: Iterable[str], stats: Stats) -> None:
        """Start with the fault setting, the expired tokens and empty counters, ledger, records."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311  # fault sampling, not crypto
        self._expired = set(expired_tokens)
        self._ledger = {}
        self._records: list[dict[str, Any]] = []
        self._stats = stats

    def events(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Return the accepted records matching ``filters`` (see `filter_records`)."""
        with self._lock:
            records = list(self._records)
        return filter_records(records, filters)

    def _over_event_limit(self, data: object, limit: int | None) -> bool:
        """Count an HTTP 413 fault and return True when ``data`` has more than ``limit`` events."""
        if limit is None or not isinstance(data, list) or len(data) <= limit:
            return False
        with self._lock:
            self._stats.faults["http_413"] += 1
            self._stats.requests_by_code["http_413"] += 1
        return True

    def reset(self) -> None:
        """Clear the ledger, the records and the counters (faults are kept)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        """Clear the state `reset` clears; called with the lock held."""
        self._ledger.clear()
        self._records.clear()
        self._stats = type(self._stats)()

    def faults(self) -> dict[str, Any]:
        """Return the fault setting in force and the expired tokens, as JSON-ready data."""
        with self._lock:
            settings = self._faults.to_json()
            settings["expired_tokens"] = sorted(self._expired)
        return settings

    def note_connection(self) -> None:
        """Count a new connection."""
        with self._lock:
            self._stats.connections += 1

    def wait(self, seconds: float) -> None:
        """Sleep, woken early by `stop`."""
        self._stopping.wait(seconds)

    def stop(self) -> None:
        """Wake every waiting request (hanging timeout faults)."""
        self._stopping.set()


def utc_now() -> datetime:
    """Return the current time in UTC (the sandboxes' default clock)."""
    return datetime.now(UTC)


def aware_now(clock: Callable[[], datetime]) -> datetime:
    """Return ``clock()``; raise ValueError when it is not timezone-aware."""
    now = clock()
    if now.tzinfo is None:
        msg = "SandboxConfig.clock must return a timezone-aware datetime"
        raise ValueError(msg)
    return now


def reject_constant(name: str) -> None:
    """Refuse NaN and Infinity (``json.loads(parse_constant=...)``): JSON has no such values."""
    msg = f"invalid JSON constant {name}"
    raise ValueError(msg)


def event_ids(data: object) -> list[str]:
    """Return the event_id of each event in a request's ``data`` ("" where there is none)."""
    if not isinstance(data, list):
        return []
    ids = []
    for event in data:
        event_id = event.get("event_id") if isinstance(event, dict) else None
        ids.append(event_id if isinstance(event_id, str) else "")
    return ids


def filter_records(
    records: list[dict[str, Any]], filters: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """Return the records matching every exact-match filter (``test``: true or false).

    A filter with an empty value matches a field that is missing or None.
    """
    for name, wanted in (filters or {}).items():
        if name == "test":
            flag = wanted.lower() in ("1", "true", "yes")
            records = [r for r in records if r["test_event"] is flag]
        else:
            records = [r for r in records if _matches(r.get(name), wanted)]
    return records


def _matches(value: object, wanted: str) -> bool:
    if value is None:
        return wanted == ""
    return str(value) == wanted


def draw_share(rng: random.Random, settings: object, names: Iterable[str]) -> str | None:
    """Return the share fault one uniform draw lands in, or None (no draw when all are 0)."""
    shares = [(name, getattr(settings, name)) for name in names]
    if not any(share for _, share in shares):
        return None
    draw = rng.random()
    cumulative = 0.0
    for name, share in shares:
        cumulative += share
        if draw < cumulative:
            return name
    return None


def check_shares(settings: object, names: Iterable[str]) -> None:
    """Raise ValueError unless each share is in [0, 1] and together they sum to at most 1."""
    total = 0.0
    for name in names:
        share = getattr(settings, name)
        if not 0.0 <= share <= 1.0:
            msg = f"fault share {name} must be between 0 and 1, got {share}"
            raise ValueError(msg)
        total += share
    if total > 1.0 + 1e-9:
        msg = f"fault shares must sum to at most 1, got {total}"
        raise ValueError(msg)


class JsonSettings:
    """Mixin of a frozen dataclass setting: `to_json` returns its fields as a JSON-ready dict."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """Return the setting as a JSON-ready dict."""
        return {f.name: getattr(self, f.name) for f in fields(cast(Any, self))}
