"""Meta Conversions API client: one ``requests.Session``, ``POST /{version}/{dataset id}/events``.

The same code talks to Meta in production and to the local Meta sandbox in tests and the demo;
only the base URL differs. The access token travels as the ``access_token`` field of the JSON
body (documented by Meta beside the query string), so it never appears in a URL that a proxy or
access log would keep. It does not retry by itself: the delivery decides from the verdict (see
``streams.meta.verdicts``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from streams.http import pooled_session, post_json
from streams.meta.verdicts import GraphError, parse_error

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds; Meta suggests about 1.5 s and most answers take under 0.6 s, but a batch of 1,000
events takes longer, and a timed-out request is retried (its events deduplicate by event_id)."""


@dataclass(frozen=True, slots=True)
class EventsResponse:
    """An HTTP answer of the events endpoint, unclassified.

    ``events_received`` is set for a success body, ``error`` for the Graph error envelope; both
    are None for an answer without JSON (a proxy page, say). ``body`` is the answer as received.
    """

    http_status: int
    events_received: int | None
    error: GraphError | None
    fbtrace_id: str | None
    body: str = field(default="", compare=False, repr=False)

    @property
    def message(self) -> str:
        """A one-line description for logs and receipts."""
        if self.error is not None:
            return self.error.message
        if self.events_received is not None:
            return f"events_received={self.events_received}"
        return f"HTTP {self.http_status} without a JSON answer"


class MetaEventsClient:
    """Client for the Conversions API ``events`` edge of one dataset (pixel)."""

    name = "meta"

    def __init__(
        self,
        base_url: str,
        api_version: str,
        pixel_id: str,
        access_token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        pool_size: int = 4,
    ) -> None:
        """Create the client; the session keeps connections alive between batches."""
        version = api_version.strip("/")
        self._url = f"{base_url.rstrip('/')}/{quote(version)}/{quote(pixel_id, safe='')}/events"
        self._path = urlsplit(self._url).path
        self._token = access_token
        self._timeout = timeout
        self._session = pooled_session(session, pool_size)

    @property
    def path(self) -> str:
        """The URL path posted to (no token in it), for logs."""
        return self._path

    def send(self, payload: Mapping[str, Any]) -> EventsResponse:
        """POST one batch (1 to 1,000 events) and return the answer, whatever its HTTP status.

        Args:
            payload: The body from :func:`streams.meta.payload.build_request` (without the
                token, which is added here).

        Raises:
            ApiError: timeout or connection error (``status_code`` None).

        """
        body = json.dumps(
            {**payload, "access_token": self._token}, separators=(",", ":"), allow_nan=False
        )
        resp = post_json(
            self._session, self._url, body, api="Meta Conversions API", timeout=self._timeout
        )
        text = resp.text
        try:
            decoded: Any = resp.json()
        except ValueError:
            decoded = None
        error = parse_error(decoded)
        received = decoded.get("events_received") if isinstance(decoded, dict) else None
        trace = decoded.get("fbtrace_id") if isinstance(decoded, dict) else None
        if error is not None and error.fbtrace_id:
            trace = error.fbtrace_id
        return EventsResponse(
            http_status=resp.status_code,
            events_received=received
            if isinstance(received, int) and not isinstance(received, bool)
            else None,
            error=error,
            fbtrace_id=str(trace) if trace else resp.headers.get("x-fb-trace-id"),
            body=text,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()
