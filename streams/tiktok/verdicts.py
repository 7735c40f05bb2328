"""Classify a TikTok Events API answer into per-event verdicts (pure).

Errors usually come back as HTTP 200 with a non-zero body ``code``; the HTTP status and the body
are read together (events-api.md, "Response"; domain.md §7):

- a rejection that names its events (``data.N``, ``Batch.N``, any case, or ``failed_events``)
  rejects those only; one that names none is bisected (:attr:`Verdict.BISECT`) until the bad
  events are alone in their requests, so good events are never dead-lettered with a bad one;
- ``40050`` (duplicated request) is delivered; ``40061`` and HTTP 413 split the request;
- HTTP 401/403/404, or any other 4xx without the API's JSON envelope, is a configuration error
  (:attr:`Verdict.CONFIG`): the destination pauses like on an auth error, nothing is dead-lettered;
- a ``4xxxx`` code this module does not know is retried :data:`UNKNOWN_CODE_ATTEMPTS` times
  (:attr:`Verdict.UNKNOWN`), then dead-lettered with the code kept.

What follows a verdict (send, split, sleep, pause, finish) is the destination-neutral retry plan,
``streams.domain.retry.next_step``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streams.domain.retry import UNKNOWN_CODE_ATTEMPTS, BatchVerdict, Verdict, backoff_seconds

__all__ = [  # the verdict kinds and the backoff live in the destination-neutral retry plan
    "UNKNOWN_CODE_ATTEMPTS",
    "BatchVerdict",
    "Verdict",
    "backoff_seconds",
    "classify",
    "is_retryable_code",
    "rejected_events",
]

OK = 0
PARTIAL = 20001
INVALID = frozenset({40000, 40002})
NO_PERMISSION = 40001
DUPLICATED_REQUEST = 40050
TOO_MANY_EVENTS = 40061
NOT_HASHED = 40062
THROTTLED = frozenset({40100, 40132})
AUTH = frozenset({40001, 40102, 40104, 40105})
REJECTIONS = INVALID | {NOT_HASHED}  # permanent, about the events sent
CONFIG_HTTP = frozenset({401, 403, 404})
TOO_LARGE_HTTP = 413

# ``data.3.properties.value``, ``Batch.0.user.email``, ``DATA[2]``: the index of an event.
_EVENT_PATH = re.compile(r"\b(?:data|batch)(?:\.(\d+)|\[(\d+)\])(?:\.[\w.]+)?", re.IGNORECASE)


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
            idx = int(m.group(1) or m.group(2))
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
    if http_status == TOO_LARGE_HTTP:
        return BatchVerdict(Verdict.SPLIT, code, message)
    if http_status in CONFIG_HTTP:
        return BatchVerdict(Verdict.AUTH if code in AUTH else Verdict.CONFIG, code, message)
    if code is None:
        if 200 <= http_status < 300:
            return BatchVerdict(Verdict.RETRY, code, message or "answer without a JSON envelope")
        # Another 4xx without the API's envelope did not come from the Events API (a proxy, a
        # wrong base URL): nothing is wrong with the events.
        return BatchVerdict(Verdict.CONFIG, code, message)
    if code in (OK, DUPLICATED_REQUEST):
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
    if named:
        return BatchVerdict(Verdict.REJECTED, code, message, named)
    if code in REJECTIONS:
        if n == 1:
            return BatchVerdict(Verdict.REJECTED, code, message, {0: message})
        return BatchVerdict(Verdict.BISECT, code, message)
    return BatchVerdict(Verdict.UNKNOWN, code, message)
