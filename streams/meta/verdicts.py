"""Classify a Meta Conversions API answer into the delivery verdicts (pure).

Errors come back in the Graph error envelope
``{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}``
(meta-capi.md §6); success is HTTP 200 with ``events_received``. The verdicts are the same as for
TikTok (:class:`streams.domain.retry.Verdict`), so one retry plan serves both destinations:

- rate limits (codes ``4``, ``17``, ``80003``, ``32``, ``613``) and transient codes (``1``, ``2``,
  ``341``, ``368``, ``5000``, ``21009``), ``is_transient: true``, HTTP 5xx, 408, 429 and
  timeouts are retried;
- ``190`` (access token), ``102`` (session), ``10`` and ``200``-``299`` (permission) pause the
  destination (:attr:`Verdict.AUTH`); HTTP 401/403/404 or a 4xx without the envelope is a
  configuration error (:attr:`Verdict.CONFIG`);
- ``100`` with subcode ``33`` (the dataset does not exist or the token may not use it) is a
  configuration error; ``100`` with any other subcode is permanent. Meta rejects the **whole**
  request when one event is invalid and does not say which, so a request of several events is
  bisected until the bad one is alone (:attr:`Verdict.BISECT`), and a single event is rejected;
- HTTP 413 splits the request; another code is retried a few times, then dead-lettered
  (:attr:`Verdict.UNKNOWN`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.domain.retry import BatchVerdict, Verdict

RATE_LIMITED = frozenset({4, 17, 32, 613, 80003})
TRANSIENT = frozenset({1, 2, 341, 368, 5000, 21009})
AUTH = frozenset({10, 102, 190})
PERMISSION = range(200, 300)
INVALID_PARAMETER = 100
NO_SUCH_OBJECT = 33  # subcode of 100: the dataset id does not exist or the token may not use it
CONFIG_HTTP = frozenset({401, 403, 404})
TOO_LARGE_HTTP = 413


@dataclass(frozen=True, slots=True)
class GraphError:
    """The fields of the Graph error envelope that classification and logs need."""

    code: int | None
    subcode: int | None
    message: str
    is_transient: bool = False
    fbtrace_id: str | None = None


def parse_error(body: Any) -> GraphError | None:
    """Return the Graph error of a decoded JSON body, or None when it holds no error envelope.

    Args:
        body: The decoded JSON answer (any type).

    Returns:
        The error, with ``error_user_title``/``error_user_msg`` folded into the message.

    """
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if not isinstance(error, Mapping):
        return None
    code = error.get("code")
    subcode = error.get("error_subcode")
    parts = [str(error.get(k)) for k in ("message", "error_user_title", "error_user_msg")]
    message = ": ".join(p for p in parts if p and p != "None")
    trace = error.get("fbtrace_id")
    return GraphError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        subcode=subcode if isinstance(subcode, int) and not isinstance(subcode, bool) else None,
        message=message or "error without a message",
        is_transient=error.get("is_transient") is True,
        fbtrace_id=str(trace) if trace else None,
    )


def _label(error: GraphError) -> str:
    sub = f"/{error.subcode}" if error.subcode is not None else ""
    return f"code {error.code}{sub}: {error.message}"


def classify(
    http_status: int | None,
    error: GraphError | None,
    events_received: int | None,
    n: int,
    transport_message: str = "",
) -> BatchVerdict:
    """Classify one answer for a request of ``n`` events.

    Args:
        http_status: HTTP status, or None when no answer arrived (timeout, connection error).
        error: The Graph error envelope, if the answer held one.
        events_received: ``events_received`` of a success body, if any.
        n: How many events the request carried.
        transport_message: What the transport said (timeouts, an answer without JSON).

    Returns:
        The verdict; ``code`` is the Graph error code when there is one.

    """
    code = error.code if error is not None else None
    if error is None:
        message = transport_message or (f"HTTP {http_status}" if http_status else "no answer")
        if http_status is None or http_status >= 500 or http_status in (408, 429):
            return BatchVerdict(Verdict.RETRY, None, message)
        if http_status == TOO_LARGE_HTTP:
            return BatchVerdict(Verdict.SPLIT, None, message)
        if 200 <= http_status < 300:
            if events_received is not None:
                return BatchVerdict(Verdict.DELIVERED, None, f"events_received={events_received}")
            return BatchVerdict(Verdict.RETRY, None, message or "answer without events_received")
        return BatchVerdict(Verdict.CONFIG, None, message)
    message = _label(error)
    if code in AUTH or (code is not None and code in PERMISSION):
        return BatchVerdict(Verdict.AUTH, code, message)
    if error.is_transient or code in RATE_LIMITED or code in TRANSIENT:
        return BatchVerdict(Verdict.RETRY, code, message)
    if http_status is not None and http_status >= 500:
        return BatchVerdict(Verdict.RETRY, code, message)
    if http_status == TOO_LARGE_HTTP:
        return BatchVerdict(Verdict.SPLIT, code, message)
    if code == INVALID_PARAMETER and error.subcode == NO_SUCH_OBJECT:
        # A wrong dataset id or a token without access to it: no event is at fault.
        return BatchVerdict(Verdict.CONFIG, code, message)
    if code == INVALID_PARAMETER:
        if n == 1:
            return BatchVerdict(Verdict.REJECTED, code, message, {0: message})
        return BatchVerdict(Verdict.BISECT, code, message)
    if http_status in CONFIG_HTTP:
        return BatchVerdict(Verdict.CONFIG, code, message)
    return BatchVerdict(Verdict.UNKNOWN, code, message)
