"""Shared fixtures: one local stack per test session, unique topic names per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from streams.local.registry.server import RegistryServer
from streams.local.stack import LocalStack, Names
from streams.serde.avro import AvroSerde

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


# --- the schema registry double and a serde on it (no broker) ---------------------------------


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    """A registry double on a free port, one per test module."""
    server = RegistryServer(port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def registry_client(registry: RegistryServer) -> SchemaRegistryClient:
    """confluent-kafka's client for the module's registry double (no retries)."""
    return SchemaRegistryClient({"url": registry.url, "max.retries": 0})


@pytest.fixture(scope="module")
def serde(registry_client: SchemaRegistryClient) -> AvroSerde:
    """The worker's serde on the module's registry double, with the packaged schemas."""
    return AvroSerde(registry_client)
