"""Table recovery after a SIGKILL reads every changelog record.

On Apache Kafka (the default broker) ListOffsets is exact and recovery trusts it: no confirming
fetch runs (``LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS`` is off), and the restarted worker still
restores every lead. On the Tansu fallback ListOffsets answers the last batch's base offset + 1
(a strict xfail in test_tansu_conformance.py); the worker's changelog writes are batched, so a
recovery that trusted that answer forgot the lead state in the tail of each partition's last
batch. There the local stack switches the confirming fetch on, and the same test shows it works.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.local.stack import LocalStack, wait_until
from streams.runtime.admin import ensure_topics
from streams.runtime.offsets import fetched_end_offsets
from tests.conftest import Names
from tests.integration.helpers import form, produce, sandbox_events, status


def _listed_end(stack: LocalStack, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": stack.broker.bootstrap, "group.id": topic})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
    finally:
        consumer.close()


def test_fetched_end_offsets_count_every_record_of_the_last_batch(stack: LocalStack) -> None:
    topic = f"ends-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack.broker.bootstrap, [topic], partitions=3)
    producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 200})
    for i in range(30):
        producer.produce(topic, value=str(i).encode(), partition=0)  # one batch of 30
    for i in range(3):
        producer.produce(topic, value=str(i).encode(), partition=1)
        producer.flush(10)  # three single-record batches
    producer.flush(10)
    listed = {(topic, p): _listed_end(stack, topic, p) for p in range(3)}

    ends = fetched_end_offsets(stack.broker.bootstrap, {**listed, ("elsewhere", 0): None})

    assert ends == {(topic, 0): 30, (topic, 1): 3, (topic, 2): 0, ("elsewhere", 0): None}


def test_restarted_worker_restores_the_tail_of_the_last_changelog_batch(
    stack: LocalStack, names: Names
) -> None:
    leads = 60
    env = names.env()
    p = names.prefix
    changelog = f"{names.app_id}-leads-changelog"
    first = stack.start_worker(p + "-first", **env)
    try:
        first.wait_ready()
        produce(stack, env, names.form, *(form(p, n) for n in range(leads)))
        wait_until(
            lambda: len(stack.consume_all(changelog, idle=0.5)) >= leads,
            60,
            f"{leads} lead states in {changelog}",
            first,
        )
    finally:
        first.kill()  # a crash: nothing more is written
    records_per_partition = [0] * stack.partitions
    for msg in stack.consume_all(changelog, idle=0.5):
        records_per_partition[msg.partition()] += 1
    listed = [_listed_end(stack, changelog, part) for part in range(stack.partitions)]
    if stack.broker.kind == "kafka":
        # Kafka lists exact ends: recovery needs (and gets) no confirming fetch.
        assert listed == records_per_partition, (listed, records_per_partition)
        assert "LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS" not in stack.env()
    else:
        # Tansu lists fewer records than the changelog holds; the confirming fetch is on.
        assert listed != records_per_partition, (listed, records_per_partition)
        assert stack.env()["LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS"] == "true"

    second = stack.start_worker(p + "-second", **env)
    try:
        second.wait_ready()
        produce(
            stack, env, names.status, *(status(p, n, f"c{n}", "Qualified") for n in range(leads))
        )
        events = wait_until(
            lambda: (lambda ev: ev if len(ev) >= leads else None)(sandbox_events(stack, p)),
            60,
            f"{leads} ApplicationApproval events (a forgotten form would make its status wait)",
            second,
        )
    finally:
        second.stop()
    ids = sorted(e["event_id"] for e in events)
    assert ids == sorted(f"{p}-evt-{n}:ApplicationApproval" for n in range(leads))
