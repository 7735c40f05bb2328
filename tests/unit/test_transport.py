"""The consumer repairs in :mod:`streams.transport`, driven without a broker.

A real :class:`streams.transport.Consumer` is built from an app that is never started; its
fetch (``_wait_next_records`` / the consumer thread) and its seeks are replaced by recorders, so
each test sets up the interleaving that lost records in the scale-out drill and checks what is
handed to the streams and where the partition is rewound. Each of these fails on Faust 0.15.3's
own consumer (``faust.transport.drivers.aiokafka.Consumer``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.types import TP

from streams.app import App
from streams.transport import Consumer

STATUS = "crm.lead-status-changed"
FORM = "leads.form-submitted"
CHANGELOG = "leadstream-leads-changelog"


def record(tp: TopicPartition, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"key", b"value", None, 3, 5, ())


class Recorder:
    """Stands in for aiokafka: the batch a fetch returns, and every seek asked of it."""

    def __init__(self) -> None:
        self.fetched_with: list[set[Any] | None] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.to_beginning: list[TopicPartition] = []
        self.committed: dict[TopicPartition, int | None] = {}
        self.commits_accepted = True

    async def getmany(self, active: set[Any] | None, timeout: float) -> dict[Any, Any]:
        self.fetched_with.append(active)
        return {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.to_beginning.extend(tps)

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    def assignment(self) -> set[TopicPartition]:
        return set(self.committed)

    async def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        return self.commits_accepted


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Consumer, Recorder]]:
    app = App("transport-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    fake = Recorder()
    monkeypatch.setattr(consumer, "_thread", fake)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 1_000)
    monkeypatch.setattr(
        app.topics, "acks_enabled_for", lambda topic: not topic.endswith("-changelog")
    )
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: tp.topic.endswith("-changelog"))
    yield consumer, fake


def batch(consumer: Consumer, records: dict[Any, list[ConsumerRecord]], active: set[Any]) -> None:
    """Make the next fetch return ``records`` for the ``active`` set (Faust's live set)."""

    async def wait_next_records(timeout: float) -> tuple[dict[Any, Any], set[Any]]:
        return records, active

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]


async def drain(consumer: Consumer, during: Any = None) -> list[tuple[str, int, int]]:
    """Offsets ``getmany`` hands out; ``during(n)`` runs after the n-th one."""
    out = []
    async for tp, message in consumer.getmany(timeout=1.0):
        out.append((tp.topic, tp.partition, message.offset))
        if during is not None:
            await during(len(out))
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_fetch_gets_a_copy_of_the_active_set_and_never_an_empty_one(consumer: Any) -> None:
    consumer, fake = consumer
    status0 = TopicPartition(STATUS, 0)
    active = {status0}
    run(consumer._getmany(active, 1.0))
    active.clear()  # a pause while the consumer thread is still fetching
    assert fake.fetched_with == [{status0}]  # what aiokafka holds did not change
    assert fake.fetched_with[0] is not active

    assert run(consumer._getmany(set(), 1.0)) == {}
    assert fake.fetched_with == [{status0}]  # aiokafka would read an empty set as "all"


def test_records_of_a_partition_paused_during_the_fetch_are_rewound_not_skipped(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form0, status0 = TopicPartition(FORM, 0), TopicPartition(STATUS, 0)
    fake.committed = {form0: 10, status0: 5}
    active = {form0}  # status0 was paused (recovery) while its records were fetched
    batch(
        consumer,
        {form0: [record(form0, 10), record(form0, 11)], status0: [record(status0, 5)]},
        active,
    )
    assert run(drain(consumer)) == [(FORM, 0, 10), (FORM, 0, 11)]
    assert fake.seeks == [(status0, 5)]  # read again once resumed, not a gap


def test_records_fetched_before_a_seek_are_not_handed_out_after_it(consumer: Any) -> None:
    consumer, fake = consumer
    form0, status0 = TopicPartition(FORM, 0), TopicPartition(STATUS, 0)
    fake.committed = {form0: 290, status0: 40}
    stale = [record(form0, offset) for offset in range(420, 424)]
    batch(
        consumer,
        {form0: stale, status0: [record(status0, 40), record(status0, 41)]},
        {form0, status0},
    )

    async def seek_to_committed_after_first(n: int) -> None:
        if n == 1:
            await consumer.perform_seek()  # recovery ends: back to the committed offsets

    handed_out = run(drain(consumer, seek_to_committed_after_first))
    assert handed_out == [(FORM, 0, 420)]  # nothing of the old batch after the seek
    assert consumer._read_offset[form0] == 290
    # form0 rewound to the seek's target (not 421: the seek is what counts), status0 to 40
    assert set(fake.seeks) == {(form0, 290), (status0, 40)}


def test_a_stream_partition_without_a_committed_offset_is_sought_to_its_beginning(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form0, form1 = TopicPartition(FORM, 0), TopicPartition(FORM, 1)
    changelog0 = TopicPartition(CHANGELOG, 0)
    fake.committed = {form0: 17, form1: None, changelog0: None}
    run(consumer.perform_seek())
    assert fake.to_beginning == [form1]  # a changelog's position belongs to table recovery
    assert consumer._read_offset[form0] == 17
    assert consumer._read_offset[form1] is None
    assert consumer._committed_offset[form0] == 17


def test_an_acknowledgement_from_an_earlier_generation_is_not_counted(consumer: Any) -> None:
    consumer, _ = consumer
    app = consumer.app
    app.consumer_generation_id = 3
    form0 = TopicPartition(FORM, 0)
    old = consumer._to_message(form0, record(form0, 7))
    old.generation_id = 2  # fetched before the last rebalance, skipped by the stream
    current = consumer._to_message(form0, record(form0, 8))
    assert current.generation_id == 3

    assert consumer.ack(old) is False
    assert old.acked
    assert consumer.ack(current) is True
    assert consumer._acked[form0] == [8]  # 7 is read again from the committed offset


def test_a_drained_buffer_does_not_reactivate_a_paused_partition(consumer: Any) -> None:
    consumer, _ = consumer
    app = consumer.app
    form0, form1 = TP(FORM, 0), TP(FORM, 1)  # as the conductor names them
    consumer._set_active_tps({form0, form1})
    app.in_recovery = False
    consumer.on_buffer_full(form0)
    consumer.on_buffer_full(form1)
    consumer.pause_partitions({form0})  # a rebalance holds form0 until recovery ends
    consumer.on_buffer_drop(form0)
    consumer.on_buffer_drop(form1)
    assert consumer._get_active_partitions() == {form1}
    consumer.resume_partitions({form0})
    assert consumer._get_active_partitions() == {form0, form1}


def test_a_refused_commit_is_logged(consumer: Any, caplog: pytest.LogCaptureFixture) -> None:
    consumer, fake = consumer
    form0 = TopicPartition(FORM, 0)
    assert run(consumer._commit({form0: 12})) is True
    assert "commit refused" not in caplog.text
    fake.commits_accepted = False  # Faust's driver: "already rebalanced", dropped silently
    assert run(consumer._commit({form0: 12})) is False
    assert "commit refused" in caplog.text and f"{FORM}[0]@12" in caplog.text
