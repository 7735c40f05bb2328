"""Delivery decisions: classify an Events API answer into per-event verdicts (pure).

Errors usually come back as HTTP 200 with a non-zero body ``code``; the HTTP status and the body
are read together (events-api.md, "Response").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

OK = 0
PARTIAL = 20001
INVALID = frozenset({40000, 40002})
NO_PERMISSION = 40001
TOO_MANY_EVENTS = 40061
NOT_HASHED = 40062
THROTTLED = frozenset({40100, 40132})
AUTH = frozenset({40001, 40102, 40104, 40105})

_EVENT_PATH = re.compile(r"\bdata\.(\d+)(?:\.[\w.]+)?")


class Verdict(StrEnum):
    """What to do with a request's events."""

    DELIVERED = "delivered"  # accepted (or some rejected, see BatchVerdict.rejected)
    RETRY = "retry"  # transient: resend the same events after a backoff
    AUTH = "auth"  # credentials or permission: pause the destination, keep the events
    SPLIT = "split"  # too many events in one request: halve and resend
    REJECTED = "rejected"  # the named events are permanently invalid; resend the others


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


def is_retryable_code(code: int) -> bool:
    """Return True for the body codes documented as transient (throttling, 5xxxx, 6xxxx)."""
    return code in THROTTLED or 50000 <= code <= 69999


def rejected_events(message: str, data: Mapping[str, Any], n: int) -> dict[int, str]:
    """Find the events an answer names, by index, from ``data`` failures or ``data.N`` paths."""
    out: dict[int, str] = {}
    failures = data.get("failed_events") or data.get("failures") or data.get("errors")
    if isinstance(failures, list):
        for item in failures:
            if isinstance(item, Mapping) and isinstance(item.get("index"), int):
                idx = item["index"]
                if 0 <= idx < n:
                    reason = str(item.get("reason") or item.get("message") or message)
                    path = item.get("path")
                    out[idx] = f"{path}: {reason}" if path and str(path) not in reason else reason
    for part in re.split(r"[;\n]", message):
        for m in _EVENT_PATH.finditer(part):
            idx = int(m.group(1))
            if 0 <= idx < n and idx not in out:
                out[idx] = part.strip() or message
    return out


def classify(
    http_status: int | None,
    code: int | None,
    message: str,
    data: Mapping[str, Any],
    n: int,
) -> BatchVerdict:
    """Classify one Events API answer for a request of ``n`` events.

    Args:
        http_status: HTTP status, or None when no answer arrived (timeout, connection error).
        code: the body ``code``, or None when there was no JSON envelope.
        message: the body ``message`` (or the transport error).
        data: the body ``data`` object.
        n: how many events the request carried.

    """
    if http_status is None or http_status >= 500 or http_status in (408, 429):
        return BatchVerdict(Verdict.RETRY, code, message)
    if http_status in (401, 403):
        return BatchVerdict(Verdict.AUTH, code, message)
    if code is None:
        if 200 <= http_status < 300:
            return BatchVerdict(Verdict.RETRY, code, message or "answer without a JSON envelope")
        # Another 4xx without an envelope: nothing names an event; treat the batch as rejected.
        return BatchVerdict(Verdict.REJECTED, code, message, dict.fromkeys(range(n), message))
    if code == OK:
        return BatchVerdict(Verdict.DELIVERED, code, message)
    if code == PARTIAL:
        return BatchVerdict(Verdict.DELIVERED, code, message, rejected_events(message, data, n))
    if code in AUTH:
        return BatchVerdict(Verdict.AUTH, code, message)
    if code == TOO_MANY_EVENTS:
        return BatchVerdict(Verdict.SPLIT, code, message)
    if is_retryable_code(code):
        return BatchVerdict(Verdict.RETRY, code, message)
    named = rejected_events(message, data, n)
    if not named:
        # 40062 or an invalid request that names no event: every event is rejected as sent.
        named = dict.fromkeys(range(n), message)
    return BatchVerdict(Verdict.REJECTED, code, message, named)


def backoff_seconds(attempt: int, initial: float, maximum: float, rand: float) -> float:
    """Exponential backoff with full jitter: ``rand`` in [0, 1) scales the capped exponential."""
    return min(maximum, initial * (2 ** min(attempt, 30))) * (0.5 + rand / 2)
