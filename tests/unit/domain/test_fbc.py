"""fbc from a landing page's fbclid: fb.1.<ms>.<fbclid>."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.domain.fbc import click_fbc, fbc_from_fbclid, fbclid_from_url

AT = datetime(2025, 3, 14, 12, 0, 0, 123000, tzinfo=UTC)


def test_fbc_is_the_documented_format() -> None:
    assert fbc_from_fbclid("IwAR2AbC", AT) == "fb.1.1741953600123.IwAR2AbC"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/?fbclid=IwAR2AbC&utm_source=fb", "IwAR2AbC"),
        ("https://example.com/?FBCLID=IwAR2AbC", "IwAR2AbC"),
        ("https://example.com/?utm_source=fb", None),
        ("https://example.com/?fbclid=", None),
        ("https://example.com/?fbclid=%01x", None),
        ("https://example.com/?fbclid=" + "a" * 501, None),
        (None, None),
    ],
)
def test_fbclid_from_url(url: str | None, expected: str | None) -> None:
    assert fbclid_from_url(url) == expected


def test_captured_cookie_wins_over_the_url() -> None:
    assert click_fbc("fb.1.1.cookie", "https://e.com/?fbclid=url", AT) == "fb.1.1.cookie"


def test_url_fbclid_is_used_when_there_is_no_cookie() -> None:
    assert click_fbc(None, "https://e.com/?fbclid=url", AT) == "fb.1.1741953600123.url"


def test_no_cookie_no_fbclid_no_fbc() -> None:
    assert click_fbc(None, "https://e.com/", AT) is None
