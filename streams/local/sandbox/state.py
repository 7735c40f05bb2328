"""The sandbox's ledger, counters and replies, and the helpers the engine changes them with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from streams.local.ledger import Stats
from streams.local.sandbox.config import (
    CODE_TOKEN_EMPTY,
    CODE_TOKEN_EXPIRED,
    CODE_TOKEN_INVALID,
    CODE_TOO_MANY_REQUESTS,
    REJECTION_STYLES,
    SHARE_FAULTS,
)


@dataclass(slots=True)
class _LedgerEntry:
    first_accepted: datetime
    times_received: int


@dataclass(slots=True)
class _Tally:
    accepted: int = 0
    deduplicated: int = 0
    duplicates: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "deduplicated": self.deduplicated,
            "duplicates": self.duplicates,
        }


@dataclass(slots=True)
class _Stats(Stats):
    events_received: int = 0
    live: _Tally = field(default_factory=_Tally)
    test: _Tally = field(default_factory=_Tally)
    rejected: Counter[str] = field(default_factory=Counter)
    max_events_per_request: int = 0


_EVENT_FILTERS: Final = (
    "event",
    "event_id",
    "event_source",
    "event_source_id",
    "test_event_code",
    "test",
)


_TOKEN_KEYS: Final = frozenset({"expire_token", "expired_tokens", "clear"})

_AUTH_MESSAGES: Final[dict[int, Callable[[str], str]]] = {
    CODE_TOKEN_EMPTY: lambda _t: "Access token is empty: send the Access-Token header",
    CODE_TOKEN_EXPIRED: lambda _t: "Access token has expired",
    CODE_TOKEN_INVALID: lambda t: (
        "Invalid access token (send the raw token, without 'Bearer')"
        if t.lower().startswith("bearer ")
        else "Invalid access token"
    ),
    CODE_TOO_MANY_REQUESTS: lambda _t: "Too many requests",
}


def _prefix_stats(stats: _Stats, prefix: str) -> dict[str, Any]:
    """Return the per-event counters of ``stats`` for event_ids starting with ``prefix``.

    Request-level counters (requests, connections, requests_by_code, faults) have no event_id
    and stay session-global; max_events_per_request counts only the matching events of a request.
    """
    tallies = ("accepted", "deduplicated", "duplicates")
    return {"prefix": prefix, **stats.counters_json(prefix, tallies)}


def _check_fault_types(updates: Mapping[str, Any]) -> None:
    for name, value in updates.items():
        if name in SHARE_FAULTS or name in ("timeout_seconds", "latency_seconds"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                msg = f"{name} must be a number"
                raise ValueError(msg)
        elif name == "auth_error" and not isinstance(value, bool):
            msg = "auth_error must be true or false"
            raise ValueError(msg)
        elif (
            name == "seed"
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            msg = "seed must be an integer or null"
            raise ValueError(msg)
        elif name == "timeout_mode" and value not in ("504", "close"):
            msg = "timeout_mode must be '504' or 'close'"
            raise ValueError(msg)
        elif name == "rejection_style" and value not in REJECTION_STYLES:
            msg = f"rejection_style must be one of {', '.join(REJECTION_STYLES)}"
            raise ValueError(msg)
        elif name == "duplicated_request" and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            msg = "duplicated_request must be a number"
            raise ValueError(msg)
        elif (
            name in ("max_events_413", "http_error", "unknown_code")
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            msg = f"{name} must be an integer or null"
            raise ValueError(msg)


def _apply_token_changes(expired: set[str], changes: Mapping[str, Any]) -> set[str]:
    if "expired_tokens" in changes:
        tokens = changes["expired_tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            msg = "expired_tokens must be a list of strings"
            raise ValueError(msg)
        expired = set(tokens)
    if "expire_token" in changes:
        token = changes["expire_token"]
        tokens = token if isinstance(token, list) else [token]
        if not all(isinstance(t, str) and t for t in tokens):
            msg = "expire_token must be a token or a list of tokens"
            raise ValueError(msg)
        expired.update(tokens)
    return expired
