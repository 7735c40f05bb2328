"""Protocol logic and state of the local Meta Conversions API sandbox (no HTTP plumbing).

Standalone on purpose: besides the local stack's shared plumbing (``streams.local.httpd``) it
imports nothing from the rest of ``streams`` (and nothing from the TikTok sandbox), so a bug
shared with the client or the payload builder cannot pass the tests.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import fields, replace
from datetime import datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs

from streams.local.httpd import JSON, Reply, control_error, html_reply, json_reply
from streams.local.ledger import (
    EngineCore,
    Stats,
    aware_now,
    draw_share,
    event_ids,
    reject_constant,
)
from streams.local.meta_sandbox.config import SHARE_FAULTS, FaultSettings, SandboxConfig
from streams.local.meta_sandbox.crm import crm_lead_id, stage_warnings
from streams.local.meta_sandbox.validation import Invalid, Window, validate_event, validate_request

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/_sandbox/events"
STATS_PATH: Final = "/_sandbox/stats"
RESET_PATH: Final = "/_sandbox/reset"
FAULTS_PATH: Final = "/_sandbox/faults"
CODE_TOKEN: Final = 190
SUBCODE_EXPIRED: Final = 463
CODE_TRANSIENT: Final = 2


_EVENT_FILTERS: Final = (
    "event_name",
    "event_id",
    "pixel_id",
    "action_source",
    "test_event_code",
    "test",
)


def _graph_error(
    code: int,
    message: str,
    *,
    status: int = HTTPStatus.BAD_REQUEST,
    subcode: int | None = None,
    title: str | None = None,
    transient: bool = False,
) -> Reply:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "is_transient": transient,
        "fbtrace_id": uuid.uuid4().hex[:11],
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if title is not None:
        error["error_user_title"] = title
        error["error_user_msg"] = message
    return json_reply({"error": error}, status)


class _Engine(EngineCore):
    """Protocol logic and state, independent of the HTTP plumbing."""

    _faults: FaultSettings
    _ledger: dict[tuple[str | None, str, str, str], datetime]

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config.faults, config.expired_tokens, Stats())
        self.config = config
        self._leads: dict[tuple[str | None, str, str], list[dict[str, Any]]] = {}

    def _clear(self) -> None:
        super()._clear()
        self._leads.clear()

    def handle_events_edge(
        self, version: str, pixel: str, token: str | None, content_type: str | None, body: bytes
    ) -> Reply:
        if self._faults.latency_seconds:
            self._stopping.wait(self._faults.latency_seconds)
        now = aware_now(self.config.clock)
        with self._lock:
            self._stats.requests += 1
            fault = self._draw_fault()
            if fault is not None:
                self._stats.faults[fault] += 1
                self._stats.requests_by_code[fault] += 1
        if fault is not None:
            return self._fault_reply(fault)
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        if media_type != JSON:
            return self._count(_graph_error(100, "Content-Type must be application/json"))
        try:
            payload = json.loads(body, parse_constant=reject_constant)
        except (ValueError, RecursionError) as exc:
            return self._count(_graph_error(100, f"Invalid JSON body ({exc})"))
        if isinstance(payload, dict) and isinstance(payload.get("access_token"), str):
            token = payload["access_token"]
        token = (token or "").strip()
        if not token or token not in self.config.access_tokens | self._expired:
            return self._count(
                _graph_error(CODE_TOKEN, "Invalid OAuth access token - Cannot parse access token")
            )
        if token in self._expired:
            return self._count(
                _graph_error(
                    CODE_TOKEN,
                    "Error validating access token: Session has expired",
                    subcode=SUBCODE_EXPIRED,
                )
            )
        if pixel not in self.config.pixel_ids:
            return self._count(
                _graph_error(
                    100,
                    f"Unsupported post request. Object with ID '{pixel}' does not exist, "
                    "cannot be loaded due to missing permissions, or does not support this "
                    f"operation ({version})",
                    subcode=33,
                )
            )
        data = payload.get("data") if isinstance(payload, dict) else None
        if self._over_event_limit(data, self._faults.max_events_413):
            return html_reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        ids = event_ids(data)
        parsed = validate_request(payload)
        if isinstance(parsed, Invalid):
            return self._reject(parsed, ids)
        events, test_code = parsed
        window = Window(
            earliest=int((now - self.config.max_event_age).timestamp()),
            latest=int((now + self.config.max_future_skew).timestamp()),
        )
        for event in events:
            problem = validate_event(event, window)
            if problem is not None:
                # Any invalid event rejects the whole request, without naming it (Meta's way).
                return self._reject(problem, ids)
        trace = uuid.uuid4().hex[:11]
        self._record(pixel, events, test_code, now, trace)
        return self._count(
            json_reply({"events_received": len(events), "messages": [], "fbtrace_id": trace})
        )

    def _draw_fault(self) -> str | None:
        faults = self._faults
        if faults.http_error is not None:
            return f"http_{faults.http_error}"
        if faults.auth_error:
            return "auth_error"
        return draw_share(self._rng, faults, SHARE_FAULTS)

    def _fault_reply(self, fault: str) -> Reply:
        settings = self._faults
        if fault == "auth_error":
            return _graph_error(CODE_TOKEN, "Invalid OAuth access token (injected)")
        if fault == "rate_limit":
            return _graph_error(
                settings.rate_limit_code, "(#17) User request limit reached", transient=True
            )
        if fault == "transient":
            return _graph_error(
                CODE_TRANSIENT,
                "Service temporarily unavailable (injected)",
                status=HTTPStatus.INTERNAL_SERVER_ERROR,
                transient=True,
            )
        if fault.startswith("http_") and fault != "http_502" and fault != "http_503":
            return html_reply(HTTPStatus(int(fault.removeprefix("http_"))))
        if fault == "http_502":
            return html_reply(HTTPStatus.BAD_GATEWAY)
        if fault == "http_503":
            return html_reply(HTTPStatus.SERVICE_UNAVAILABLE)
        reply = html_reply(HTTPStatus.GATEWAY_TIMEOUT)
        return replace(reply, delay=settings.timeout_seconds, close=settings.close_on_timeout)

    def _count(self, reply: Reply) -> Reply:
        key = str(reply.status)
        if reply.status != HTTPStatus.OK:
            try:
                key = str(json.loads(reply.body)["error"]["code"])
            except (ValueError, KeyError, TypeError):
                key = f"http_{reply.status}"
        with self._lock:
            self._stats.requests_by_code[key] += 1
        return reply

    def _reject(self, problem: Invalid, ids: list[str]) -> Reply:
        with self._lock:
            self._stats.note_request(ids)
            self._stats.by_event.extend((event_id, f"rejected:{problem.code}") for event_id in ids)
        logger.debug("request rejected: %s", problem.message)
        return self._count(
            _graph_error(
                problem.code, problem.message, subcode=problem.subcode, title=problem.user_title
            )
        )

    def _record(
        self,
        pixel: str,
        events: list[dict[str, Any]],
        test_code: str | None,
        now: datetime,
        trace: str,
    ) -> None:
        kind = "live" if test_code is None else "test"
        with self._lock:
            self._stats.note_request(event_ids(events))
            for event in events:
                event_id = event.get("event_id") or f"anonymous-{uuid.uuid4().hex}"
                key = (test_code, pixel, event["event_name"], event_id)
                first = self._ledger.get(key)
                if first is not None and now - first < self.config.dedup_window:
                    self._stats.by_event.append((event_id, f"{kind}:deduplicated"))
                    continue
                self._ledger[key] = now
                self._stats.by_event.append((event_id, f"{kind}:accepted"))
                record = dict(event)
                record.update(
                    pixel_id=pixel,
                    test_event_code=test_code,
                    test_event=test_code is not None,
                    received_at=now.isoformat(),
                    fbtrace_id=trace,
                )
                lead_id = crm_lead_id(event)
                if lead_id is not None:
                    history = self._leads.setdefault((test_code, pixel, lead_id), [])
                    warnings = stage_warnings(history, event, self.config.crm_stages)
                    if warnings:
                        record["warnings"] = warnings
                    history.append(event)
                self._records.append(record)

    # -- control endpoints ---------------------------------------------------------------

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        with self._lock:
            stats = self._stats
            wanted = prefix or ""
            result = stats.counters_json(wanted, ("accepted", "deduplicated"))
            result["crm_warnings"] = sum(
                len(r.get("warnings", ()))
                for r in self._records
                if str(r.get("event_id", "")).startswith(wanted)
            )
        if prefix is not None:
            result["prefix"] = prefix
        return result

    def configure_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a partial update; raise ValueError or TypeError (nothing changed) when invalid."""
        allowed = {f.name for f in fields(FaultSettings)} | {"expire_token", "clear"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            msg = f"unknown fault setting(s): {', '.join(unknown)}"
            raise ValueError(msg)
        updates = {k: v for k, v in changes.items() if k not in ("expire_token", "clear")}
        with self._lock:
            clear = changes.get("clear") is True
            settings = replace(FaultSettings() if clear else self._faults, **updates)
            expired = set() if clear else set(self._expired)
            if "expire_token" in changes:
                token = changes["expire_token"]
                if not isinstance(token, str) or not token:
                    msg = "expire_token must be a token"
                    raise ValueError(msg)
                expired.add(token)
            self._faults, self._expired = settings, expired
            if "seed" in changes or clear:
                self._rng.seed(settings.seed)
        logger.info("Meta sandbox faults set to %s", settings.to_json())
        return self.faults()

    def handle_control(self, method: str, path: str, query: str, body: bytes) -> Reply:
        params = parse_qs(query, keep_blank_values=True)
        if method == "GET" and path == EVENTS_PATH:
            unknown = sorted(set(params) - set(_EVENT_FILTERS))
            if unknown:
                return control_error(f"unknown filter(s) {', '.join(unknown)}")
            return json_reply(self.events({k: v[-1] for k, v in params.items()}))
        if method == "GET" and path == STATS_PATH:
            if set(params) - {"prefix"}:
                return control_error("unknown parameter(s); use prefix")
            return json_reply(self.stats(params["prefix"][-1] if "prefix" in params else None))
        if method == "GET" and path == FAULTS_PATH:
            return json_reply(self.faults())
        if method == "POST" and path == RESET_PATH:
            self.reset()
            return json_reply({"ok": True})
        if method == "POST" and path == FAULTS_PATH:
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    return control_error("body must be a JSON object")
                return json_reply(self.configure_faults(changes))
            except (ValueError, TypeError) as exc:
                return control_error(str(exc))
        if path in (EVENTS_PATH, STATS_PATH, RESET_PATH, FAULTS_PATH):
            return control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED)
        return control_error(f"no such endpoint: {method} {path}", HTTPStatus.NOT_FOUND)
