"""Click ids carried in a landing page URL's query (``ttclid``, ``fbclid``)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def query_param(url: str | None, name: str, max_chars: int) -> str | None:
    """Return a click id from the URL's query, matched case-insensitively by name.

    A value that is blank, longer than ``max_chars`` or holds control characters is ignored: the
    form is never rejected for its URL.

    Args:
        url: The page URL, or None.
        name: The query parameter, in lower case.
        max_chars: The longest value accepted.

    Returns:
        The value, stripped, or None.

    """
    if not url or name not in url.lower():
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    for key, value in parse_qsl(query, keep_blank_values=False):
        if key.lower() == name:
            text = value.strip()
            if text and len(text) <= max_chars and not CONTROL.search(text):
                return text
    return None
