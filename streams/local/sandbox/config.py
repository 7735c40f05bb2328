"""The sandbox's settings: paths, API codes, fault injection, configuration (stdlib only)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from streams.local.ledger import JsonSettings, check_shares, utc_now

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


@dataclass(frozen=True, slots=True)
class FaultSettings(JsonSettings):
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
        check_shares(self, SHARE_FAULTS)
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
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        """Reject a non-positive rate limit."""
        if self.rate_limit_per_second is not None and self.rate_limit_per_second <= 0:
            msg = "rate_limit_per_second must be > 0 or None"
            raise ValueError(msg)
