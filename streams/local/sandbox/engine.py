"""The sandbox's protocol logic and state (track, ledger, stats, faults), independent of HTTP."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from streams.local.httpd import JSON, Reply, control_error, html_reply, json_reply
from streams.local.ledger import (
    EngineCore,
    aware_now,
    draw_share,
    event_ids,
    reject_constant,
)
from streams.local.sandbox.config import (
    _EVENT_INDEX,
    CODE_DUPLICATED_REQUEST,
    CODE_INVALID_PARAMS,
    CODE_OK,
    CODE_PARTIAL_OK,
    CODE_PERMISSION_ERROR,
    CODE_SYSTEM_ERROR,
    CODE_TOKEN_EMPTY,
    CODE_TOKEN_EXPIRED,
    CODE_TOKEN_INVALID,
    CODE_TOO_MANY_REQUESTS,
    SHARE_FAULTS,
    FaultSettings,
    SandboxConfig,
)
from streams.local.sandbox.state import (
    _AUTH_MESSAGES,
    _EVENT_FILTERS,
    _TOKEN_KEYS,
    _apply_token_changes,
    _check_fault_types,
    _LedgerEntry,
    _prefix_stats,
    _Stats,
)
from streams.local.sandbox.validation import (
    Rejection,
    TimeWindow,
    TrackRequest,
    find_unhashed_pii,
    validate_event,
    validate_request,
)

logger = logging.getLogger(__name__)


class _Engine(EngineCore):
    """Protocol logic and state, independent of the HTTP plumbing."""

    _faults: FaultSettings
    _ledger: dict[tuple[str | None, str, str, str], _LedgerEntry]
    _stats: _Stats

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config.faults, config.expired_tokens, _Stats())
        self.config = config
        self._buckets: dict[str, tuple[float, float]] = {}

    # -- track ---------------------------------------------------------------------------

    def handle_track(self, token: str | None, content_type: str | None, body: bytes) -> Reply:
        if self._faults.latency_seconds:
            self.wait(self._faults.latency_seconds)
        now = aware_now(self.config.clock)
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
        return draw_share(self._rng, faults, SHARE_FAULTS)

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

    def _fault_reply(self, fault: str, request_id: str) -> Reply:
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
            return html_reply(HTTPStatus(int(fault.removeprefix("http_"))))
        if fault == "http_502":
            return html_reply(HTTPStatus.BAD_GATEWAY)
        if fault == "http_503":
            return html_reply(HTTPStatus.SERVICE_UNAVAILABLE)
        reply = html_reply(HTTPStatus.GATEWAY_TIMEOUT)
        return replace(
            reply, delay=settings.timeout_seconds, close=settings.timeout_mode == "close"
        )

    def _track(
        self, request_id: str, now: datetime, content_type: str | None, body: bytes
    ) -> Reply:
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != JSON:
            return self._answer(
                request_id, CODE_INVALID_PARAMS, "Content-Type must be application/json"
            )
        try:
            payload = json.loads(body, parse_constant=reject_constant)
        except (ValueError, RecursionError) as exc:
            return self._answer(request_id, CODE_INVALID_PARAMS, f"body: invalid JSON ({exc})")
        data = payload.get("data") if isinstance(payload, dict) else None
        if self._over_event_limit(data, self._faults.max_events_413):
            return html_reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        ids = event_ids(data)
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
    ) -> Reply:
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
    ) -> Reply:
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
        self._stats.note_request(ids)

    def _answer(
        self, request_id: str, code: int, message: str, data: dict[str, Any] | None = None
    ) -> Reply:
        with self._lock:
            self._stats.requests_by_code[str(code)] += 1
        logger.debug("track request %s answered %d: %s", request_id, code, message)
        return json_reply(
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

    # -- control endpoints ---------------------------------------------------------------

    def handle_events(self, query: str) -> Reply:
        params = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - set(_EVENT_FILTERS))
        if unknown:
            return control_error(
                f"unknown filter(s) {', '.join(unknown)}; use {', '.join(_EVENT_FILTERS)}"
            )
        return json_reply(self.events({name: values[-1] for name, values in params.items()}))

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

    def handle_stats(self, query: str) -> Reply:
        params = parse_qs(query, keep_blank_values=True)
        unknown = sorted(set(params) - {"prefix"})
        if unknown:
            return control_error(f"unknown parameter(s) {', '.join(unknown)}; use prefix")
        prefix = params["prefix"][-1] if "prefix" in params else None
        return json_reply(self.stats(prefix))

    def _clear(self) -> None:
        super()._clear()
        self._buckets.clear()

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

    def handle_faults(self, body: bytes) -> Reply:
        try:
            changes = json.loads(body or b"{}")
        except ValueError as exc:
            return control_error(f"invalid JSON: {exc}")
        if not isinstance(changes, dict):
            return control_error("body must be a JSON object")
        try:
            return json_reply(self.configure_faults(changes))
        except (ValueError, TypeError) as exc:
            return control_error(str(exc))
