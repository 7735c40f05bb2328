"""Shared fixtures: one local stack per test session, unique topic names per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from streams.local.stack import LocalStack, Names

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real broker, the registry double and the Events API sandbox, once per session.

    The broker is Apache Kafka (Tansu only where no Java 17+ is found, announced loudly), with
    its SASL_SSL (SCRAM) and mTLS listeners open for the secured-connection tests.
    """
    local = LocalStack(workdir=tmp_path_factory.mktemp("stack"), secured=True)
    local.start()
    print(f"\nlocal broker: {local.broker.describe()}")
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def names() -> Names:
    """Unique topic names and consumer group for this test."""
    return Names(prefix=f"t{os.getpid()}x{next(_counter)}")
