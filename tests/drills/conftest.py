"""Failure drills: real broker, real worker processes. Reduced size by default (CI); `make drills`
sets DRILL_SCALE=full for the sizes the README quotes."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/drills" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def full() -> bool:
    """True for the full-size drills (`make drills`)."""
    return os.environ.get("DRILL_SCALE", "ci") == "full"
