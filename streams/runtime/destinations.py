"""Destinations: what the delivery shell needs from each platform, one adapter per platform.

A conversion is built once by the core; each configured destination has its own :class:`Delivery`
(batching, retry horizon, circuit, receipts, ledger entries, metrics label), given one of these
adapters. The adapter turns a conversion into the platform's event (or a rejection, or a skip),
posts a batch, and classifies the answer into the shared verdicts; the retry rules stay in one
place. Blocking HTTP runs in a thread (the shell's job).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from streams.domain.retry import BatchVerdict
from streams.domain.types import Conversion, Rejection
from streams.errors import ApiError
from streams.meta import payload as meta_payload
from streams.meta import verdicts as meta_verdicts
from streams.meta.client import MetaEventsClient
from streams.meta.payload import Skipped
from streams.settings import Settings
from streams.tiktok import payload as tiktok_payload
from streams.tiktok import verdicts as tiktok_verdicts
from streams.tiktok.client import EventsApiClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Group:
    """Events that may share one request: same destination account and same test code."""

    event_source: str
    event_source_id: str
    test_event_code: str | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """One conversion made ready for one destination."""

    group: Hashable
    body: dict[str, Any]
    event_name: str
    event_id: str
    event_source: str
    event_source_id: str
    test_event: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """A classified answer to one request."""

    verdict: BatchVerdict
    request_id: str | None
    http_status: int | None
    body: str


class Destination(Protocol):
    """A platform the delivery shell sends conversions to."""

    name: str

    def ledger_key(self, event_id: str) -> bytes:
        """Key of the destination's entry in the delivered table."""
        ...  # pragma: no cover

    def prepare(self, conv: Conversion, now: datetime) -> Prepared | Rejection | Skipped:
        """Build the event, or say why it is dead-lettered (Rejection) or not for it (Skipped)."""
        ...  # pragma: no cover

    def send(self, group: Hashable, bodies: Sequence[Mapping[str, Any]]) -> Answer:
        """POST one request (blocking) and classify its answer."""
        ...  # pragma: no cover

    def expired(self, conv: Conversion, now: datetime) -> Rejection | None:
        """Say whether a prepared event may no longer be sent (checked before every attempt)."""
        ...  # pragma: no cover


def for_another(conv: Conversion, name: str) -> Skipped | None:
    """Skip a conversion the core meant for another destination only (``destination`` set)."""
    if conv.destination in (None, name):
        return None
    message = f"Conversion event_id={conv.event_id}: for {conv.destination} only"
    return Skipped("not_for_destination", message)


class TikTokDestination:
    """The TikTok Events API: pixel (``web``) and CRM event set (``crm``) groups."""

    def __init__(self, settings: Settings, client: EventsApiClient) -> None:
        """Bind the settings (pixel, event set, test code) and the HTTP client."""
        self.settings = settings
        self.client = client
        self.name = client.name

    def ledger_key(self, event_id: str) -> bytes:
        """Return the plain event_id, as before Meta existed (existing ledgers stay valid)."""
        return event_id.encode()

    def prepare(self, conv: Conversion, now: datetime) -> Prepared | Rejection | Skipped:
        """Route the conversion and build its Events API event (a Meta-only one is skipped)."""
        other = for_another(conv, self.name)
        if other is not None:
            return other
        s = self.settings
        route = tiktok_payload.route(
            conv,
            pixel_code=s.tiktok_pixel_code,
            crm_event_set_id=s.tiktok_crm_event_set_id,
            test_event_code=s.tiktok_test_event_code,
        )
        if isinstance(route, Rejection):
            return route
        return Prepared(
            group=route,
            body=tiktok_payload.build_event(conv, route.event_source),
            event_name=conv.event,
            event_id=conv.event_id,
            event_source=route.event_source,
            event_source_id=route.event_source_id,
            test_event=route.test_event_code is not None,
        )

    def send(self, group: Hashable, bodies: Sequence[Mapping[str, Any]]) -> Answer:
        """POST to the track endpoint and classify the answer."""
        assert isinstance(group, tiktok_payload.Destination)  # noqa: S101 - built by prepare
        request = tiktok_payload.build_request(group, bodies)
        n = len(bodies)
        try:
            resp = self.client.track(request)
        except ApiError as exc:
            verdict = tiktok_verdicts.classify(exc.status_code, exc.code, str(exc), {}, n)
            return Answer(verdict, exc.request_id, exc.status_code, exc.body)
        verdict = tiktok_verdicts.classify(resp.http_status, resp.code, resp.message, resp.data, n)
        return Answer(verdict, resp.request_id, resp.http_status, resp.body)

    def expired(self, conv: Conversion, now: datetime) -> Rejection | None:
        """Never: TikTok documents no age limit that fails a request."""
        return None


class MetaDestination:
    """The Meta Conversions API: one dataset, groups by test event code."""

    name = "meta"

    def __init__(self, settings: Settings, client: MetaEventsClient) -> None:
        """Bind the settings (dataset, test code, stage map) and the HTTP client."""
        if not settings.meta_pixel_id:
            msg = "MetaDestination needs LEADSTREAM_META_PIXEL_ID"
            raise ValueError(msg)
        self.client = client
        self.pixel_id = settings.meta_pixel_id
        self.test_event_code = settings.meta_test_event_code
        self.stage_map = settings.meta_stage_map_or_default()
        self.group = Group("capi", self.pixel_id, self.test_event_code)

    def ledger_key(self, event_id: str) -> bytes:
        """Return ``meta:<event_id>``: Meta's entry beside TikTok's in the delivered table."""
        return f"meta:{event_id}".encode()

    def prepare(self, conv: Conversion, now: datetime) -> Prepared | Rejection | Skipped:
        """Build the Conversions API event (or refuse it: too old, no key; or skip it)."""
        other = for_another(conv, self.name)
        if other is not None:
            return other
        event = meta_payload.build_event(conv, stage_map=self.stage_map, now=now)
        if not isinstance(event, dict):
            return event
        return Prepared(
            group=self.group,
            body=event,
            event_name=event["event_name"],
            event_id=event["event_id"],
            event_source=event["action_source"],
            event_source_id=self.pixel_id,
            test_event=self.test_event_code is not None,
        )

    def send(self, group: Hashable, bodies: Sequence[Mapping[str, Any]]) -> Answer:
        """POST to the dataset's events edge and classify the answer."""
        request = meta_payload.build_request(bodies, self.test_event_code)
        n = len(bodies)
        try:
            resp = self.client.send(request)
        except ApiError as exc:
            verdict = meta_verdicts.classify(None, None, None, n, str(exc))
            return Answer(verdict, None, None, "")
        verdict = meta_verdicts.classify(
            resp.http_status, resp.error, resp.events_received, n, resp.message
        )
        return Answer(verdict, resp.fbtrace_id, resp.http_status, resp.body)

    def expired(self, conv: Conversion, now: datetime) -> Rejection | None:
        """Refuse an event that turned 7 days old while waiting (a retry or a pause).

        Meta would reject the whole request for it, so it is dead-lettered before the attempt.
        """
        return meta_payload.too_old(conv, now)


def meta_destination(settings: Settings) -> MetaDestination | None:
    """Return the Meta destination when it is configured (dataset id and token), else None."""
    if not settings.meta_configured() or settings.meta_access_token is None:
        return None
    client = MetaEventsClient(
        settings.meta_api_url,
        settings.meta_api_version,
        settings.meta_pixel_id or "",
        settings.meta_access_token.get_secret_value(),
    )
    return MetaDestination(settings, client)
