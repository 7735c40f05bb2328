"""HTTP server of the local TikTok Events API sandbox: track endpoint, ledger, stats and faults.

Standalone on purpose: it imports nothing from the rest of ``streams`` so that a bug shared with
the client or the payload builder cannot pass the tests. Standard library only.

Endpoints:
    ``POST /open_api/v1.3/event/track/`` -- the Events API 2.0 contract, validated strictly.
    ``GET /_sandbox/events`` -- accepted unique events (filters: event, event_id, event_source,
    event_source_id, test_event_code, test).
    ``GET /_sandbox/stats`` -- counters (``?prefix=P``: the per-event counters count only events
    whose event_id starts with P). ``POST /_sandbox/reset`` -- clear ledger and counters.
    ``GET|POST /_sandbox/faults`` -- read or change fault injection.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs

from streams.local.sandbox.validation import (
    Rejection,
    TimeWindow,
    TrackRequest,
    find_unhashed_pii,
    validate_event,
    validate_request,
)

logger = logging.getLogger(__name__)

TRACK_PATH: Final = "/open_api/v1.3/event/track/"
EVENTS_PATH: Final = "/_sandbox/events"
STATS_PATH: Final = "/_sandbox/stats"
RESET_PATH: Final = "/_sandbox/reset"
FAULTS_PATH: Final = "/_sandbox/faults"

DEFAULT_TOKEN: Final = "sandbox-token"  # noqa: S105  # public local default, not a secret
DEFAULT_PIXEL: Final = "SANDBOXPIXEL"
DEFAULT_CRM_EVENT_SET: Final = "SANDBOXCRMSET"
DEFAULT_PORT: Final = 8090

CODE_OK: Final = 0
CODE_PARTIAL_OK: Final = 20001
CODE_INVALID_PARAMS: Final = 40000
CODE_PARAM_ERROR: Final = 40002
CODE_PERMISSION_ERROR: Final = 40001
CODE_DUPLICATED_REQUEST: Final = 40050
CODE_TOO_MANY_REQUESTS: Final = 40100
CODE_TOKEN_EXPIRED: Final = 40102
CODE_TOKEN_EMPTY: Final = 40104
CODE_TOKEN_INVALID: Final = 40105
CODE_SYSTEM_ERROR: Final = 50000

# Probabilistic faults, in the order their shares are stacked on one uniform draw.
SHARE_FAULTS: Final = ("timeout", "http_502", "http_503", "server_error", "throttle")
# How a request carrying invalid events is answered: ``named`` (partial success, each rejected
# event named as data.N), ``batch`` (the whole request rejected, events named as Batch.N, as
# peers have seen) or ``unnamed`` (the whole request rejected, the bad event not named).
REJECTION_STYLES: Final = ("named", "batch", "unnamed")
# HTTP statuses the sandbox can answer every track request with, without the JSON envelope.
HTTP_ERRORS: Final = (401, 403, 404)
_EVENT_INDEX: Final = re.compile(r"^data\.(\d+)")

_JSON: Final = "application/json"
_HTML: Final = "text/html; charset=utf-8"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Fault injection setting; shares are per-request probabilities that must sum to <= 1.

    Attributes:
        throttle: Share of requests answered with code 40100.
        server_error: Share answered with code 50000 (HTTP 200).
        http_502: Share answered with an HTTP 502 HTML page.
        http_503: Share answered with an HTTP 503 HTML page.
        timeout: Share that hang for ``timeout_seconds``.
        timeout_seconds: How long a timeout fault hangs.
        timeout_mode: After hanging, answer HTTP ``504`` or ``close`` the connection unanswered.
        auth_error: When True every track request answers 40105.
        latency_seconds: Every track request waits this long before it is handled (a slow API).
        seed: Seed of the fault random generator (None: not reproducible).
        rejection_style: How invalid events are answered (see ``REJECTION_STYLES``).
        duplicated_request: Share of accepted requests answered 40050 (events still recorded,
            as when the first copy of a request was accepted and its answer lost).
        max_events_413: Requests with more events than this answer HTTP 413 (no envelope).
        http_error: When set (401, 403 or 404), every track request answers that HTTP status
            with an HTML page, as a wrong URL, proxy or token does.
        unknown_code: When set, every track request answers this body code (nothing recorded).

    """

    throttle: float = 0.0
    server_error: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    timeout: float = 0.0
    timeout_seconds: float = 15.0
    timeout_mode: Literal["504", "close"] = "504"
    auth_error: bool = False
    latency_seconds: float = 0.0
    seed: int | None = None
    rejection_style: Literal["named", "batch", "unnamed"] = "named"
    duplicated_request: float = 0.0
    max_events_413: int | None = None
    http_error: int | None = None
    unknown_code: int | None = None

    def __post_init__(self) -> None:
        """Reject shares outside [0, 1] or summing to more than 1."""
        total = 0.0
        for name in SHARE_FAULTS:
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                msg = f"fault share {name} must be between 0 and 1, got {share}"
                raise ValueError(msg)
            total += share
        if total > 1.0 + 1e-9:
            msg = f"fault shares must sum to at most 1, got {total}"
            raise ValueError(msg)
        if self.latency_seconds < 0:
            msg = "latency_seconds must be >= 0"
            raise ValueError(msg)
        if self.timeout_seconds < 0:
            msg = "timeout_seconds must be >= 0"
            raise ValueError(msg)
        if self.timeout_mode not in ("504", "close"):
            msg = "timeout_mode must be '504' or 'close'"
            raise ValueError(msg)
        if self.rejection_style not in REJECTION_STYLES:
            msg = f"rejection_style must be one of {', '.join(REJECTION_STYLES)}"
            raise ValueError(msg)
        if not 0.0 <= self.duplicated_request <= 1.0:
            msg = "duplicated_request must be between 0 and 1"
            raise ValueError(msg)
        if self.max_events_413 is not None and self.max_events_413 < 1:
            msg = "max_events_413 must be >= 1"
            raise ValueError(msg)
        if self.http_error is not None and self.http_error not in HTTP_ERRORS:
            msg = f"http_error must be one of {', '.join(map(str, HTTP_ERRORS))}"
            raise ValueError(msg)
        if self.unknown_code is not None and self.unknown_code <= 0:
            msg = "unknown_code must be a positive code, e.g. 41234"
            raise ValueError(msg)

    def to_json(self) -> dict[str, Any]:
        """Return the setting as a JSON-ready dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Static configuration of a sandbox.

    Attributes:
        access_tokens: Valid ``Access-Token`` values.
        pixel_codes: Valid ``event_source_id`` values for ``web``.
        crm_event_set_ids: Valid ``event_source_id`` values for ``crm``.
        rate_limit_per_second: Requests per second allowed per token (burst of the same size,
            at least 1); over it the answer is 40100. None disables the limit.
        app_ids: Valid ``event_source_id`` values for ``app``.
        offline_event_set_ids: Valid ``event_source_id`` values for ``offline``.
        expired_tokens: Tokens answered with 40102 (token expired).
        faults: Fault injection in force at start.
        dedup_window: Window in which the same (event_source_id, event, event_id) counts once.
        max_event_age: Oldest accepted ``event_time`` relative to the server clock.
        max_future_skew: Furthest accepted ``event_time`` in the future.
        max_body_bytes: Largest accepted request body (bigger: HTTP 413).
        clock: Source of the current time; must return timezone-aware datetimes.

    """

    access_tokens: frozenset[str]
    pixel_codes: frozenset[str]
    crm_event_set_ids: frozenset[str]
    rate_limit_per_second: float | None = None
    app_ids: frozenset[str] = frozenset()
    offline_event_set_ids: frozenset[str] = frozenset()
    expired_tokens: frozenset[str] = frozenset()
    faults: FaultSettings = field(default_factory=FaultSettings)
    dedup_window: timedelta = timedelta(hours=48)
    max_event_age: timedelta = timedelta(days=7)
    max_future_skew: timedelta = timedelta(minutes=10)
    max_body_bytes: int = 16 * 1024 * 1024
    clock: Callable[[], datetime] = _utc_now

    def __post_init__(self) -> None:
        """Reject a non-positive rate limit."""
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            msg = "rate_limit_per_second must be > 0 or None"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = _JSON
    delay: float = 0.0
    close: bool = False


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
class _Stats:
    requests: int = 0
    connections: int = 0
    requests_by_code: Counter[str] = field(default_factory=Counter)
    events_received: int = 0
    live: _Tally = field(default_factory=_Tally)
    test: _Tally = field(default_factory=_Tally)
    rejected: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    max_events_per_request: int = 0
    # (event_id, counter) for every per-event count above, so stats can be filtered by prefix;
    # (event_id, request number) for every event received, for a filtered max_events_per_request.
    by_event: list[tuple[str, str]] = field(default_factory=list)
    received: list[tuple[str, int]] = field(default_factory=list)
    request_number: int = 0


_EVENT_FILTERS: Final = (
    "event",
    "event_id",
    "event_source",
    "event_source_id",
    "test_event_code",
    "test",
)


def _json_reply(payload: object, status: int = HTTPStatus.OK) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Reply(status, body)


def _html_reply(status: HTTPStatus) -> _Reply:
    text = f"<html><body><h1>{status.value} {status.phrase}</h1></body></html>"
    return _Reply(status.value, text.encode(), _HTML)


def _control_error(message: str, status: int = HTTPStatus.BAD_REQUEST) -> _Reply:
    return _json_reply({"error": message}, status)


def _reject_constant(name: str) -> None:
    msg = f"invalid JSON constant {name}"
    raise ValueError(msg)


class _Engine:
    """Protocol logic and state, independent of the HTTP plumbing."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults = config.faults
        self._rng = random.Random(config.faults.seed)  # noqa: S311  # fault sampling, not crypto
        self._expired = set(config.expired_tokens)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._ledger: dict[tuple[str | None, str, str, str], _LedgerEntry] = {}
        self._records: list[dict[str, Any]] = []
        self._stats = _Stats()

    # -- track ---------------------------------------------------------------------------

    def handle_track(self, token: str | None, content_type: str | None, body: bytes) -> _Reply:
        if self._faults.latency_seconds:
            self.wait(self._faults.latency_seconds)
        now = self._now()
        request_id = f"{now:%Y%m%d%H%M%S}{uuid.uuid4().hex[:18].upper()}"
        token = (token or "").strip()
        auth_code: int | None = None
        with self._lock:
            self._stats.requests += 1
            fault = self._draw_fault()
            if fault is not None:
                self._stats.faults[fault] += 1
            else:
                auth_code = self._auth_code(token)
        if fault is not None:
            return self._fault_reply(fault, request_id)
        if auth_code is not None:
            return self._answer(request_id, auth_code, _AUTH_MESSAGES[auth_code](token))
        return self._track(request_id, now, content_type, body)

    def _draw_fault(self) -> str | None:
        faults = self._faults
        if faults.http_error is not None:
            return f"http_{faults.http_error}"
        if faults.unknown_code is not None:
            return "unknown_code"
        if faults.auth_error:
            return "auth_error"
        shares = [getattr(faults, name) for name in SHARE_FAULTS]
        if not any(shares):
            return None
        draw = self._rng.random()
        cumulative = 0.0
        for name, share in zip(SHARE_FAULTS, shares, strict=True):
            cumulative += share
            if draw < cumulative:
                return name
        return None

    def _auth_code(self, token: str) -> int | None:
        """Return the auth/rate error code for a token, or None; call with the lock held."""
        if not token:
            return CODE_TOKEN_EMPTY
        if token in self._expired:
            return CODE_TOKEN_EXPIRED
        if token not in self.config.access_tokens:
            return CODE_TOKEN_INVALID
        rate = self.config.rate_limit_per_second
        if rate is None:
            return None
        capacity = max(1.0, rate)
        now = time.monotonic()
        tokens, last = self._buckets.get(token, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[token] = (tokens, now)
            return CODE_TOO_MANY_REQUESTS
        self._buckets[token] = (tokens - 1.0, now)
        return None

    def _fault_reply(self, fault: str, request_id: str) -> _Reply:
        if fault == "auth_error":
            return self._answer(request_id, CODE_TOKEN_INVALID, "Invalid access token (injected)")
        if fault == "throttle":
            return self._answer(request_id, CODE_TOO_MANY_REQUESTS, "Too many requests")
        if fault == "server_error":
            return self._answer(request_id, CODE_SYSTEM_ERROR, "System error (injected)")
        with self._lock:
            self._stats.requests_by_code[fault] += 1
            settings = self._faults
        if fault == "unknown_code" and settings.unknown_code is not None:
            return self._answer(request_id, settings.unknown_code, "Unknown error (injected)")
        if fault in ("http_401", "http_403", "http_404"):
            return _html_reply(HTTPStatus(int(fault.removeprefix("http_"))))
        if fault == "http_502":
            return _html_reply(HTTPStatus.BAD_GATEWAY)
        if fault == "http_503":
            return _html_reply(HTTPStatus.SERVICE_UNAVAILABLE)
        reply = _html_reply(HTTPStatus.GATEWAY_TIMEOUT)
        return replace(
            reply, delay=settings.timeout_seconds, close=settings.timeout_mode == "close"
        )

    def _track(
        self, request_id: str, now: datetime, content_type: str | None, body: bytes
    ) -> _Reply:
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != _JSON:
            return self._answer(
                request_id, CODE_INVALID_PARAMS, "Content-Type must be application/json"
            )
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            return self._answer(request_id, CODE_INVALID_PARAMS, f"body: invalid JSON ({exc})")
        limit = self._faults.max_events_413
        data = payload.get("data") if isinstance(payload, dict) else None
        if limit is not None and isinstance(data, list) and len(data) > limit:
            with self._lock:
                self._stats.faults["http_413"] += 1
                self._stats.requests_by_code["http_413"] += 1
            return _html_reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        ids = _event_ids(data)
        parsed = validate_request(payload)
        if isinstance(parsed, Rejection):
            return self._reject_all(request_id, parsed, ids)
        if parsed.event_source_id not in self._allowed_ids(parsed.event_source):
            message = (
                f"No permission to operate {parsed.event_source} event source "
                f"{parsed.event_source_id}"
            )
            rejection = Rejection("event_source_id", message, CODE_PERMISSION_ERROR)
            return self._reject_all(request_id, rejection, ids, message=message)
        unhashed = find_unhashed_pii(parsed.data)
        if unhashed is not None:
            return self._reject_all(request_id, unhashed, ids)
        window = TimeWindow(
            earliest=int((now - self.config.max_event_age).timestamp()),
            latest=int((now + self.config.max_future_skew).timestamp()),
        )
        failures: list[Rejection] = []
        valid: list[dict[str, Any]] = []
        for index, event in enumerate(parsed.data):
            failure = validate_event(event, index, parsed.event_source, window)
            if failure is None:
                valid.append(event)
            else:
                failures.append(failure)
        style = self._faults.rejection_style
        if failures and style != "named":
            # The whole request is rejected and nothing is recorded, as the live API sometimes
            # does: with ``Batch.N`` paths, or without saying which event is bad.
            first = failures[0]
            if style == "batch":
                message = "; ".join(_EVENT_INDEX.sub(r"Batch.\1", f.message) for f in failures)
            else:
                message = _EVENT_INDEX.sub("", first.message, count=1).lstrip(".: ") or first.reason
            with self._lock:
                self._stats.faults[f"rejection_{style}"] += 1
            return self._reject_all(request_id, first, ids, message)
        failed = [
            {"index": f.index, "path": f.path, "reason": f.reason, "code": f.code} for f in failures
        ]
        if not valid:
            first = failures[0]
            return self._finish(
                request_id, first.code, first.message, {"failed_events": failed}, ids, failures
            )
        self._record(parsed, valid, request_id, now)
        if failures:
            message = "; ".join(f.message for f in failures)
            return self._finish(
                request_id, CODE_PARTIAL_OK, message, {"failed_events": failed}, ids, failures
            )
        if self._faults.duplicated_request:
            with self._lock:
                duplicated = self._rng.random() < self._faults.duplicated_request
                if duplicated:
                    self._stats.faults["duplicated_request"] += 1
            if duplicated:
                return self._finish(
                    request_id, CODE_DUPLICATED_REQUEST, "Duplicated request", {}, ids, []
                )
        return self._finish(request_id, CODE_OK, "OK", {}, ids, [])

    def _allowed_ids(self, event_source: str) -> frozenset[str]:
        config = self.config
        return {
            "web": config.pixel_codes,
            "crm": config.crm_event_set_ids,
            "app": config.app_ids,
            "offline": config.offline_event_set_ids,
        }[event_source]

    def _reject_all(
        self, request_id: str, rejection: Rejection, ids: list[str], message: str | None = None
    ) -> _Reply:
        with self._lock:
            self._note_events(ids)
            if ids:
                code = str(rejection.code)
                self._stats.rejected[code] += len(ids)
                self._stats.by_event.extend((event_id, f"rejected:{code}") for event_id in ids)
        return self._answer(request_id, rejection.code, message or rejection.message)

    def _finish(
        self,
        request_id: str,
        code: int,
        message: str,
        data: dict[str, Any],
        ids: list[str],
        failures: list[Rejection],
    ) -> _Reply:
        with self._lock:
            self._note_events(ids)
            for failure in failures:
                self._stats.rejected[str(failure.code)] += 1
                event_id = ids[failure.index] if failure.index is not None else ""
                self._stats.by_event.append((event_id, f"rejected:{failure.code}"))
        return self._answer(request_id, code, message, data)

    def _note_events(self, ids: list[str]) -> None:
        count = len(ids)
        self._stats.events_received += count
        self._stats.max_events_per_request = max(self._stats.max_events_per_request, count)
        number = self._stats.request_number = self._stats.request_number + 1
        self._stats.received.extend((event_id, number) for event_id in ids)

    def _answer(
        self, request_id: str, code: int, message: str, data: dict[str, Any] | None = None
    ) -> _Reply:
        with self._lock:
            self._stats.requests_by_code[str(code)] += 1
        logger.debug("track request %s answered %d: %s", request_id, code, message)
        return _json_reply(
            {"code": code, "message": message, "request_id": request_id, "data": data or {}}
        )

    def _record(
        self,
        request: TrackRequest,
        events: list[dict[str, Any]],
        request_id: str,
        now: datetime,
    ) -> None:
        bucket = request.test_event_code
        window = self.config.dedup_window
        received_at = now.isoformat()
        kind = "live" if bucket is None else "test"
        with self._lock:
            tally = self._stats.live if bucket is None else self._stats.test
            by_event = self._stats.by_event
            for event in events:
                event_id = event["event_id"]
                key = (bucket, request.event_source_id, event["event"], event_id)
                entry = self._ledger.get(key)
                if entry is not None:
                    entry.times_received += 1
                    if entry.times_received == 2:
                        tally.duplicates += 1
                        by_event.append((event_id, f"{kind}:duplicates"))
                    if now - entry.first_accepted < window:
                        tally.deduplicated += 1
                        by_event.append((event_id, f"{kind}:deduplicated"))
                        continue
                    entry.first_accepted = now
                else:
                    self._ledger[key] = _LedgerEntry(now, 1)
                tally.accepted += 1
                by_event.append((event_id, f"{kind}:accepted"))
                record = dict(event)
                record.update(
                    event_source=request.event_source,
                    event_source_id=request.event_source_id,
                    test_event_code=bucket,
                    test_event=bucket is not None,
                    received_at=received_at,
                    request_id=request_id,
                )
                self._records.append(record)

    def _now(self) -> datetime:
        now = self.config.clock()
        if now.tzinfo is None:
            msg = "SandboxConfig.clock must return a timezone-aware datetime"
            raise ValueError(msg)
        return now

    # -- control endpoints ---------------------------------------------------------------

    def events(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._records)
        for name, wanted in (filters or {}).items():
            if name == "test":
                flag = wanted.lower() in ("1", "true", "yes")
                records = [r for r in records if r["test_event"] is flag]
            else:
                records = [r for r in records if _matches(r.get(name), wanted)]
        return records

    def handle_events(self, query: str) -> _Reply:
        params = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - set(_EVENT_FILTERS))
        if unknown:
            return _control_error(
                f"unknown filter(s) {', '.join(unknown)}; use {', '.join(_EVENT_FILTERS)}"
            )
        return _json_reply(self.events({name: values[-1] for name, values in params.items()}))

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        with self._lock:
            stats = self._stats
            if prefix is not None:
                return _prefix_stats(stats, prefix)
            return {
                "requests": stats.requests,
                "connections": stats.connections,
                "requests_by_code": dict(stats.requests_by_code),
                "events_received": stats.events_received,
                "accepted": stats.live.accepted,
                "deduplicated": stats.live.deduplicated,
                "duplicates": stats.live.duplicates,
                "rejected": dict(stats.rejected),
                "rejected_total": sum(stats.rejected.values()),
                "test": stats.test.to_json(),
                "faults_injected": sum(stats.faults.values()),
                "faults_by_kind": dict(stats.faults),
                "max_events_per_request": stats.max_events_per_request,
            }

    def handle_stats(self, query: str) -> _Reply:
        params = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - {"prefix"})
        if unknown:
            return _control_error(f"unknown parameter(s) {', '.join(unknown)}; use prefix")
        prefix = params["prefix"][-1] if "prefix" in params else None
        return _json_reply(self.stats(prefix))

    def reset(self) -> None:
        with self._lock:
            self._ledger.clear()
            self._records.clear()
            self._buckets.clear()
            self._stats = _Stats()

    def faults(self) -> dict[str, Any]:
        with self._lock:
            settings = self._faults.to_json()
            settings["expired_tokens"] = sorted(self._expired)
        return settings

    def configure_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a partial fault update; raise ValueError (nothing changed) when invalid."""
        allowed = {f.name for f in fields(FaultSettings)}
        allowed |= {"expire_token", "expired_tokens", "clear"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            msg = f"unknown fault setting(s): {', '.join(unknown)}"
            raise ValueError(msg)
        updates = {k: v for k, v in changes.items() if k in allowed - _TOKEN_KEYS}
        _check_fault_types(updates)
        with self._lock:
            base = FaultSettings() if changes.get("clear") is True else self._faults
            settings = replace(base, **updates)  # validates in __post_init__
            expired = set() if changes.get("clear") is True else set(self._expired)
            expired = _apply_token_changes(expired, changes)
            self._faults = settings
            self._expired = expired
            if "seed" in changes or changes.get("clear") is True:
                self._rng.seed(settings.seed)
        logger.info("sandbox faults set to %s", settings.to_json())
        return self.faults()

    def handle_faults(self, body: bytes) -> _Reply:
        try:
            changes = json.loads(body or b"{}")
        except ValueError as exc:
            return _control_error(f"invalid JSON: {exc}")
        if not isinstance(changes, dict):
            return _control_error("body must be a JSON object")
        try:
            return _json_reply(self.configure_faults(changes))
        except (ValueError, TypeError) as exc:
            return _control_error(str(exc))

    def note_connection(self) -> None:
        with self._lock:
            self._stats.connections += 1

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def stop(self) -> None:
        self._stopping.set()


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


def _event_ids(data: object) -> list[str]:
    """Return the event_id of each event in a request's ``data`` ("" where there is none)."""
    if not isinstance(data, list):
        return []
    ids = []
    for event in data:
        event_id = event.get("event_id") if isinstance(event, dict) else None
        ids.append(event_id if isinstance(event_id, str) else "")
    return ids


def _prefix_stats(stats: _Stats, prefix: str) -> dict[str, Any]:
    """Return the per-event counters of ``stats`` for event_ids starting with ``prefix``.

    Request-level counters (requests, connections, requests_by_code, faults) have no event_id
    and stay session-global; max_events_per_request counts only the matching events of a request.
    """
    counts = Counter(name for event_id, name in stats.by_event if event_id.startswith(prefix))
    per_request = Counter(
        number for event_id, number in stats.received if event_id.startswith(prefix)
    )
    rejected = {
        name.removeprefix("rejected:"): n
        for name, n in counts.items()
        if name.startswith("rejected:")
    }
    return {
        "prefix": prefix,
        "requests": stats.requests,
        "connections": stats.connections,
        "requests_by_code": dict(stats.requests_by_code),
        "events_received": per_request.total(),
        "accepted": counts["live:accepted"],
        "deduplicated": counts["live:deduplicated"],
        "duplicates": counts["live:duplicates"],
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "test": {
            name: counts[f"test:{name}"] for name in ("accepted", "deduplicated", "duplicates")
        },
        "faults_injected": sum(stats.faults.values()),
        "faults_by_kind": dict(stats.faults),
        "max_events_per_request": max(per_request.values(), default=0),
    }


def _matches(value: object, wanted: str) -> bool:
    if value is None:
        return wanted == ""
    return str(value) == wanted


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: _Engine) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.engine = engine
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: Any) -> None:
        """Log an unexpected handler failure instead of printing it to stderr."""
        logger.exception("sandbox request from %s failed", client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for seconds.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LeadstreamSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 75  # idle keep-alive connections are closed after this many seconds

    @property
    def _engine(self) -> _Engine:
        return cast(_Server, self.server).engine

    def setup(self) -> None:
        """Count the connection, so clients can be checked for keep-alive reuse."""
        super().setup()
        self._engine.note_connection()

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        body = self._read_body()
        if body is None:
            return
        engine = self._engine
        if path == TRACK_PATH:
            reply = engine.handle_track(
                self.headers.get("Access-Token"), self.headers.get("Content-Type"), body
            )
        elif path == RESET_PATH:
            engine.reset()
            reply = _json_reply({"ok": True})
        elif path == FAULTS_PATH:
            reply = engine.handle_faults(body)
        elif path in (EVENTS_PATH, STATS_PATH):
            reply = _control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED)
        else:
            reply = _control_error(f"no such endpoint: POST {path}", HTTPStatus.NOT_FOUND)
        self._send(reply)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        engine = self._engine
        if path == EVENTS_PATH:
            reply = engine.handle_events(query)
        elif path == STATS_PATH:
            reply = engine.handle_stats(query)
        elif path == FAULTS_PATH:
            reply = _json_reply(engine.faults())
        elif path in (TRACK_PATH, RESET_PATH):
            reply = _control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED)
        else:
            reply = _control_error(f"no such endpoint: GET {path}", HTTPStatus.NOT_FOUND)
        self._send(reply)

    def _read_body(self) -> bytes | None:
        limit = self._engine_limit()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0:
            self._fail(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return None
        if length > limit:
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return None
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._fail(HTTPStatus.BAD_REQUEST, "invalid chunked encoding")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _engine_limit(self) -> int:
        return self._engine.config.max_body_bytes

    def _fail(self, status: HTTPStatus, message: str) -> None:
        self._send(_control_error(message, status))
        self.close_connection = True

    def _send(self, reply: _Reply) -> None:
        if reply.delay:
            self._engine.wait(reply.delay)
        if reply.close:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            logger.debug("client %s went away before the answer", self.client_address[0])
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.client_address[0], format % args)


class Sandbox:
    """The Events API sandbox server; binds its socket on construction (port 0: any free port)."""

    def __init__(self, config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        """Create the server and bind it.

        Args:
            config: Tokens, event sources, limits and initial faults.
            host: Interface to bind.
            port: TCP port; 0 picks a free one (see `url`).

        """
        self.config = config
        self._engine = _Engine(config)
        self._server = _Server((host, port), self._engine)
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; clients append the API path."""
        host, port = self._server.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a background daemon thread; returns at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, name="events-api-sandbox", daemon=True
        )
        self._thread.start()
        self._serving.wait(5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop` is called."""
        logger.info("Events API sandbox listening on %s", self.url)
        self._serving.set()
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving, wake hanging timeout faults and close the socket."""
        self._engine.stop()
        if self._serving.is_set():
            self._server.shutdown()
            self._serving.clear()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Sandbox:
        """Start serving."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop serving."""
        self.stop()

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        """Return the same counters as ``GET /_sandbox/stats``.

        Args:
            prefix: When given, the per-event counters count only events whose event_id starts
                with it (request-level counters stay session-global).

        Returns:
            The counters, as JSON-ready data.

        """
        return self._engine.stats(prefix)

    def events(self, **filters: str) -> list[dict[str, Any]]:
        """Return accepted unique events, like ``GET /_sandbox/events``.

        Args:
            **filters: Exact-match filters on record fields, e.g. ``event="QualifiedLead"``;
                ``test="true"`` or ``"false"`` selects test or live events.

        Returns:
            The matching records, oldest first.

        """
        return [dict(record) for record in self._engine.events(filters)]

    def reset(self) -> None:
        """Clear the ledger, the counters and the rate-limit state (faults are kept)."""
        self._engine.reset()

    def configure_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault injection, like ``POST /_sandbox/faults``.

        Args:
            **changes: Any of the `FaultSettings` fields, ``expire_token`` (a token or a list),
                ``expired_tokens`` (replaces the list) or ``clear=True`` (back to no faults).

        Returns:
            The setting now in force, as ``GET /_sandbox/faults`` shows it.

        """
        return self._engine.configure_faults(changes)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadstream sandbox",
        description=(
            "Local TikTok Events API 2.0 sandbox. Serves POST "
            f"{TRACK_PATH} with strict validation, platform-style dedup and optional fault "
            f"injection; inspect it with GET {EVENTS_PATH}, GET {STATS_PATH}, "
            f"POST {RESET_PATH} and GET/POST {FAULTS_PATH}."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 picks one (default %(default)s)"
    )
    parser.add_argument(
        "--token",
        action="append",
        help=f"valid Access-Token, repeatable (default {DEFAULT_TOKEN})",
    )
    parser.add_argument(
        "--pixel",
        action="append",
        help=f"valid pixel code for web events, repeatable (default {DEFAULT_PIXEL})",
    )
    parser.add_argument(
        "--crm-event-set",
        action="append",
        help=f"valid CRM event set id, repeatable (default {DEFAULT_CRM_EVENT_SET})",
    )
    parser.add_argument(
        "--expired-token", action="append", default=[], help="token answered 40102, repeatable"
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="RPS",
        help="requests per second per token before code 40100 (default: unlimited)",
    )
    faults = parser.add_argument_group(
        "fault injection", "shares are per-request probabilities (0..1) and must sum to <= 1"
    )
    faults.add_argument("--fault-throttle", type=float, default=0.0, help="share answered 40100")
    faults.add_argument(
        "--fault-server-error", type=float, default=0.0, help="share answered 50000"
    )
    faults.add_argument("--fault-http-502", type=float, default=0.0, help="share answered HTTP 502")
    faults.add_argument("--fault-http-503", type=float, default=0.0, help="share answered HTTP 503")
    faults.add_argument("--fault-timeout", type=float, default=0.0, help="share that hang")
    faults.add_argument(
        "--fault-timeout-seconds",
        type=float,
        default=15.0,
        help="how long a timeout fault hangs (default %(default)s)",
    )
    faults.add_argument(
        "--fault-latency-seconds",
        type=float,
        default=0.0,
        help="every track request waits this long first, like a slow API (default %(default)s)",
    )
    faults.add_argument(
        "--fault-timeout-mode",
        choices=("504", "close"),
        default="504",
        help="after hanging, answer HTTP 504 or close the connection (default %(default)s)",
    )
    faults.add_argument(
        "--fault-auth-error", action="store_true", help="answer every request 40105"
    )
    faults.add_argument("--fault-seed", type=int, default=None, help="seed for reproducible faults")
    faults.add_argument(
        "--fault-rejection-style",
        choices=REJECTION_STYLES,
        default="named",
        help="answer invalid events by name (data.N, partial success), reject the request "
        "naming them Batch.N, or reject it without naming them (default %(default)s)",
    )
    faults.add_argument(
        "--fault-duplicated-request",
        type=float,
        default=0.0,
        help="share of accepted requests answered 40050 (events still recorded)",
    )
    faults.add_argument(
        "--fault-max-events-413",
        type=int,
        default=None,
        metavar="N",
        help="answer HTTP 413 to requests with more than N events",
    )
    faults.add_argument(
        "--fault-http-error",
        type=int,
        choices=HTTP_ERRORS,
        default=None,
        help="answer every track request with this HTTP status, without the JSON envelope",
    )
    faults.add_argument(
        "--fault-unknown-code",
        type=int,
        default=None,
        metavar="CODE",
        help="answer every track request with this body code (e.g. 41234)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox from the command line until interrupted.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        The process exit status.

    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        fault_settings = FaultSettings(
            throttle=args.fault_throttle,
            server_error=args.fault_server_error,
            http_502=args.fault_http_502,
            http_503=args.fault_http_503,
            timeout=args.fault_timeout,
            timeout_seconds=args.fault_timeout_seconds,
            latency_seconds=args.fault_latency_seconds,
            timeout_mode=args.fault_timeout_mode,
            auth_error=args.fault_auth_error,
            seed=args.fault_seed,
            rejection_style=args.fault_rejection_style,
            duplicated_request=args.fault_duplicated_request,
            max_events_413=args.fault_max_events_413,
            http_error=args.fault_http_error,
            unknown_code=args.fault_unknown_code,
        )
        config = SandboxConfig(
            access_tokens=frozenset(args.token or [DEFAULT_TOKEN]),
            pixel_codes=frozenset(args.pixel or [DEFAULT_PIXEL]),
            crm_event_set_ids=frozenset(args.crm_event_set or [DEFAULT_CRM_EVENT_SET]),
            rate_limit_per_second=args.rate_limit,
            expired_tokens=frozenset(args.expired_token),
            faults=fault_settings,
        )
    except ValueError as exc:
        parser.error(str(exc))
    sandbox = Sandbox(config, host=args.host, port=args.port)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # containers stop with SIGTERM
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        logger.info("Events API sandbox stopping")
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
