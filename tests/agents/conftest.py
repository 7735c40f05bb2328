"""Agent-tier fixtures: no LEADSTREAM_* variable of the developer's shell reaches a test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_leadstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)
