"""Meta click ids (a domain rule: intake builds them): ``fbc`` from a landing page's ``fbclid``.

Meta documents the ``_fbc`` cookie as ``fb.1.<creation time in ms>.<fbclid>``: ``fb`` is the
version, ``1`` the subdomain index of the domain the cookie is set on (``1`` for the registrable
domain, which is what the Pixel does by default), then the time the click id was first seen. When
the form did not capture the cookie but the page URL still carries ``fbclid``, the form's submit
time is the best "first seen" time Leadstream has.
"""

from __future__ import annotations

from datetime import datetime

from streams.domain.urls import query_param

MAX_FBCLID_CHARS = 500


def fbclid_from_url(url: str | None) -> str | None:
    """Return the landing page URL's ``fbclid`` (see :func:`streams.domain.urls.query_param`)."""
    return query_param(url, "fbclid", MAX_FBCLID_CHARS)


def fbc_from_fbclid(fbclid: str, seen_at: datetime) -> str:
    """Build the ``fbc`` value Meta documents: ``fb.1.<ms>.<fbclid>``.

    Args:
        fbclid: The click id from the URL, unchanged (it is case-sensitive).
        seen_at: When the click id was first seen (timezone-aware).

    Returns:
        The ``fbc`` string.

    """
    return f"fb.1.{int(seen_at.timestamp() * 1000)}.{fbclid}"


def click_fbc(fbc: str | None, page_url: str | None, seen_at: datetime) -> str | None:
    """Return the form's ``fbc``, or one built from the page URL's ``fbclid`` when it has none.

    Args:
        fbc: The ``_fbc`` cookie captured with the form, if any (it wins: it carries the real
            first-seen time).
        page_url: The landing page URL.
        seen_at: The form's submit time, used as the first-seen time of a URL ``fbclid``.

    Returns:
        The ``fbc`` value, or None when there is neither a cookie nor an ``fbclid``.

    """
    if fbc:
        return fbc
    fbclid = fbclid_from_url(page_url)
    return None if fbclid is None else fbc_from_fbclid(fbclid, seen_at)
