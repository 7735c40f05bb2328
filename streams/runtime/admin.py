"""Topic administration with confluent-kafka's AdminClient: create topics idempotently."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.connection import KafkaConnection, as_connection
from streams.errors import BrokerError
from streams.serde import contract
from streams.settings import Settings

logger = logging.getLogger(__name__)


def ensure_topics(
    conn: KafkaConnection | str,
    names: Iterable[str],
    partitions: int,
    replication: int = 1,
    timeout: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Existing topics are left as they are (their partition count is not changed). ``conn`` may
    be a bare bootstrap string for a PLAINTEXT broker (tests, benchmarks).
    """
    conn = as_connection(conn)
    admin = AdminClient(conn.librdkafka())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        msg = f"cannot reach Kafka at {conn.bootstrap}: {exc}"
        raise BrokerError(msg) from exc
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in wanted],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            msg = f"cannot create topic {name}: {exc}"
            raise BrokerError(msg) from exc
    logger.info("created topics: %s", ", ".join(created))
    return created


def ensure_leadstream_topics(settings: Settings) -> list[str]:
    """Create the input and output topics of the contract (domain.md §1) if missing."""
    return ensure_topics(
        settings.kafka_connection(),
        [record.topic(settings) for record in contract.RECORDS],
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
    )
