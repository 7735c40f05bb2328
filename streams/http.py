"""HTTP plumbing the platform clients share: one pooled ``requests.Session`` and one JSON POST.

Each client keeps its own URL, authentication and answer parsing; this only opens the session
(keep-alive pool, no transport retries: the delivery decides retries from the verdict) and turns
a timeout or a connection failure into an `ApiError` naming the API.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests
from requests.adapters import HTTPAdapter

from streams.errors import ApiError


def pooled_session(session: requests.Session | None, pool_size: int) -> requests.Session:
    """Return ``session`` (or a new one) with a keep-alive pool and JSON requests.

    Args:
        session: A session to configure, or None for a new one.
        pool_size: Connections kept alive per host.

    Returns:
        The configured session.

    """
    session = session or requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Content-Type": "application/json"})
    return session


def post_json(
    session: requests.Session,
    url: str,
    body: str,
    *,
    api: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """POST a JSON body and return the answer, whatever its HTTP status.

    Args:
        session: The session from `pooled_session`.
        url: Where to post.
        body: The JSON text.
        api: The API's name for error messages, e.g. ``"Events API"``.
        timeout: Seconds to wait for the answer.
        headers: Extra request headers.

    Raises:
        ApiError: timeout or connection error (``status_code`` None).

    """
    try:
        return session.post(
            url, data=body.encode("utf-8"), headers=dict(headers or {}), timeout=timeout
        )
    except requests.Timeout as exc:
        msg = f"{api} timed out after {timeout}s"
        raise ApiError(msg) from exc
    except requests.RequestException as exc:
        msg = f"{api} unreachable: {type(exc).__name__}"
        raise ApiError(msg) from exc
