"""TikTok Events API 2.0 client: one ``requests.Session``, one method per endpoint.

The same code talks to TikTok in production and to the local sandbox in tests and the demo; only
the base URL differs. It does not retry by itself: the delivery agent decides retries from the
outcome (see ``streams.tiktok.verdicts``), bounded by the retry horizon.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from streams.errors import ApiError
from streams.http import pooled_session, post_json

logger = logging.getLogger(__name__)

TRACK_PATH = "/open_api/v1.3/event/track/"


@dataclass(frozen=True, slots=True)
class TrackResponse:
    """An answer of the track endpoint in the API's JSON envelope (any HTTP status), unclassified.

    ``body`` is the answer as received, for the WARNING log of a rejected request.
    """

    http_status: int
    code: int
    message: str
    request_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    body: str = field(default="", compare=False, repr=False)


class EventsApiClient(Protocol):
    """What the delivery agent needs from an Events API client (the HTTP side, not a destination).

    A destination is the configured target a conversion is routed to (``payload.Destination``);
    this is the client that carries requests to it. A second platform is a second class.
    """

    name: str

    def track(self, payload: Mapping[str, Any]) -> TrackResponse:
        """Send one batch request; raise ApiError when there is no usable answer."""
        ...  # pragma: no cover


class TikTokEventsClient:
    """Client for ``POST /open_api/v1.3/event/track/``."""

    name = "tiktok"

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        pool_size: int = 4,
    ) -> None:
        """Create the client; the session keeps connections alive between batches."""
        self._url = base_url.rstrip("/") + TRACK_PATH
        self._path = urlsplit(self._url).path
        self._token = access_token
        self._timeout = timeout
        self._session = pooled_session(session, pool_size)

    def track(self, payload: Mapping[str, Any]) -> TrackResponse:
        """POST one batch (1 to 1,000 events) and return the envelope.

        An answer in the API's JSON envelope is returned whatever its HTTP status (a 4xx keeps
        the API's own message and ``data``); the caller classifies it.

        Raises:
            ApiError: timeout or connection error (``status_code`` None), or an answer that is not
                the documented JSON envelope (its message names the HTTP status and URL path).

        """
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        resp = post_json(
            self._session,
            self._url,
            body,
            api="Events API",
            timeout=self._timeout,
            headers={"Access-Token": self._token},
        )
        request_id = resp.headers.get("X-Tt-Logid")
        text = resp.text
        envelope: Any = None
        try:
            envelope = resp.json()
        except ValueError:
            envelope = None
        if isinstance(envelope, dict):
            request_id = str(envelope.get("request_id") or request_id or "") or None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("code"), int):
            code = envelope.get("code") if isinstance(envelope, dict) else None
            msg = (
                f"Events API answered HTTP {resp.status_code} at {self._path} "
                "without a JSON envelope"
            )
            raise ApiError(
                msg,
                status_code=resp.status_code,
                code=code if isinstance(code, int) else None,
                request_id=request_id,
                body=text,
            )
        data = envelope.get("data")
        return TrackResponse(
            http_status=resp.status_code,
            code=envelope["code"],
            message=str(envelope.get("message", "")),
            request_id=request_id,
            data=data if isinstance(data, dict) else {},
            body=text,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()
