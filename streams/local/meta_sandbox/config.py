"""Configuration of the local Meta Conversions API sandbox: tokens, datasets, faults, limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from streams.local.ledger import JsonSettings, check_shares, utc_now
from streams.local.meta_sandbox.crm import DEFAULT_CRM_STAGES

DEFAULT_TOKEN: Final = "meta-sandbox-token"  # noqa: S105  # public local default, not a secret
DEFAULT_PIXEL: Final = "100000000000001"
DEFAULT_PORT: Final = 8091
RATE_LIMIT_CODES: Final = (4, 17, 80003)
# Probabilistic faults, in the order their shares are stacked on one uniform draw.
SHARE_FAULTS: Final = ("timeout", "http_502", "http_503", "transient", "rate_limit")
HTTP_ERRORS: Final = (401, 403, 404)


@dataclass(frozen=True, slots=True)
class FaultSettings(JsonSettings):
    """Fault injection; shares are per-request probabilities that must sum to <= 1.

    Attributes:
        rate_limit: Share answered HTTP 400 with ``rate_limit_code`` (4, 17 or 80003).
        rate_limit_code: The rate-limit code answered.
        transient: Share answered HTTP 500 with code 2, ``is_transient: true``.
        http_502: Share answered with an HTTP 502 HTML page.
        http_503: Share answered with an HTTP 503 HTML page.
        timeout: Share that hang for ``timeout_seconds``, then answer 504 (or close).
        timeout_seconds: How long a timeout fault hangs.
        close_on_timeout: Close the connection unanswered after hanging.
        auth_error: When True every request answers code 190 (invalid OAuth access token).
        http_error: When set (401, 403, 404), every request answers that status as HTML.
        max_events_413: Requests with more events than this answer HTTP 413.
        latency_seconds: Every request waits this long first (a slow API).
        seed: Seed of the fault random generator.

    """

    rate_limit: float = 0.0
    rate_limit_code: int = 17
    transient: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    timeout: float = 0.0
    timeout_seconds: float = 15.0
    close_on_timeout: bool = False
    auth_error: bool = False
    http_error: int | None = None
    max_events_413: int | None = None
    latency_seconds: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        """Reject impossible settings."""
        for name in SHARE_FAULTS:
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, int | float):
                msg = f"{name} must be a number"
                raise TypeError(msg)
        check_shares(self, SHARE_FAULTS)
        if self.rate_limit_code not in RATE_LIMIT_CODES:
            msg = f"rate_limit_code must be one of {RATE_LIMIT_CODES}"
            raise ValueError(msg)
        if self.http_error is not None and self.http_error not in HTTP_ERRORS:
            msg = f"http_error must be one of {HTTP_ERRORS}"
            raise ValueError(msg)
        if self.max_events_413 is not None and self.max_events_413 < 1:
            msg = "max_events_413 must be >= 1"
            raise ValueError(msg)
        if self.latency_seconds < 0 or self.timeout_seconds < 0:
            msg = "latency_seconds and timeout_seconds must be >= 0"
            raise ValueError(msg)
        if not isinstance(self.auth_error, bool) or not isinstance(self.close_on_timeout, bool):
            msg = "auth_error and close_on_timeout must be true or false"
            raise TypeError(msg)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Static configuration of a Meta sandbox.

    Attributes:
        access_tokens: Valid access tokens.
        pixel_ids: Valid dataset (pixel) ids.
        expired_tokens: Tokens answered 190/463 (session expired).
        faults: Fault injection in force at start.
        dedup_window: Window in which the same (pixel, event_name, event_id) counts once.
        max_event_age: Oldest accepted ``event_time`` (7 days; older fails the whole request).
        max_future_skew: Furthest accepted ``event_time`` in the future.
        max_body_bytes: Largest accepted body (bigger: HTTP 413).
        crm_stages: The CRM stages in funnel order, for the Conversion Leads warnings.
        clock: Source of the current time (timezone-aware).

    """

    access_tokens: frozenset[str]
    pixel_ids: frozenset[str]
    expired_tokens: frozenset[str] = frozenset()
    faults: FaultSettings = field(default_factory=FaultSettings)
    dedup_window: timedelta = timedelta(hours=48)
    max_event_age: timedelta = timedelta(days=7)
    max_future_skew: timedelta = timedelta(minutes=10)
    max_body_bytes: int = 16 * 1024 * 1024
    crm_stages: tuple[str, ...] = DEFAULT_CRM_STAGES
    clock: Callable[[], datetime] = utc_now
