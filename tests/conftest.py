"""Shared fixtures: one local stack per test session, unique topic names per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from streams.local import LocalStack

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real broker (Tansu), the registry double and the Events API sandbox, once per session."""
    local = LocalStack(workdir=tmp_path_factory.mktemp("stack"))
    local.start()
    try:
        yield local
    finally:
        local.stop()


@dataclass(frozen=True)
class Names:
    """Topic names and app id unique to one test, as LEADSTREAM_* overrides."""

    prefix: str

    @property
    def form(self) -> str:
        return f"{self.prefix}.leads.form-submitted"

    @property
    def booking(self) -> str:
        return f"{self.prefix}.leads.booking-created"

    @property
    def status(self) -> str:
        return f"{self.prefix}.crm.lead-status-changed"

    @property
    def conversions(self) -> str:
        return f"{self.prefix}.leadstream.conversions"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}.leadstream.deliveries"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.leadstream.dead-letter"

    @property
    def app_id(self) -> str:
        return f"{self.prefix}-leadstream"

    def env(self) -> dict[str, str]:
        return {
            "LEADSTREAM_APP_ID": self.app_id,
            "LEADSTREAM_TOPIC_FORM_SUBMITTED": self.form,
            "LEADSTREAM_TOPIC_BOOKING_CREATED": self.booking,
            "LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED": self.status,
            "LEADSTREAM_TOPIC_CONVERSIONS": self.conversions,
            "LEADSTREAM_TOPIC_DELIVERIES": self.deliveries,
            "LEADSTREAM_TOPIC_DEAD_LETTER": self.dead_letter,
        }


@pytest.fixture
def names() -> Names:
    """Unique topic names and consumer group for this test."""
    return Names(prefix=f"t{os.getpid()}x{next(_counter)}")
