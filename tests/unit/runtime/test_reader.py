"""The conversions reader's wiring, on a fake librdkafka consumer (the broker runs in integration).

What it must keep: a batch's offsets are committed only after :meth:`Delivery.handle` returned,
on the deliver group; a partition starts where that group left it (else where the app's own
group did, else at its first record, committed at once); a revoked partition's records are not
delivered once the rebalance began, and a batch still in flight after the wait commits nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.runtime import reader as reader_mod
from streams.runtime.reader import ConversionsReader

TOPIC = "leadstream.conversions"
OFFSET_INVALID = -1001


class FakeMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"lead"

    def value(self) -> bytes:
        return f"{self._partition}:{self._offset}".encode()

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class FakeConsumer:
    """A topic of ``sizes[p]`` records per partition, read in offset order."""

    def __init__(self, sizes: dict[int, int], committed: dict[int, int] | None = None) -> None:
        self.sizes = sizes
        self.committed_offsets = dict(committed or {})
        self.commits: list[dict[int, int]] = []
        self.positions: dict[int, int] = {}
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        meta = SimpleNamespace(error=None, partitions=dict.fromkeys(self.sizes))
        return SimpleNamespace(topics={topic: meta})

    def committed(self, tps: Sequence[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(TOPIC, tp.partition, self.committed_offsets.get(tp.partition, -1001))
            for tp in tps
        ]

    def commit(self, offsets: Sequence[TopicPartition], asynchronous: bool) -> None:
        done = {tp.partition: tp.offset for tp in offsets}
        self.commits.append(done)
        self.committed_offsets.update(done)

    def get_watermark_offsets(self, tp: TopicPartition, **_: Any) -> tuple[int, int]:
        return 0, self.sizes[tp.partition]

    def position(self, tps: Sequence[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, tp.partition, self.positions[tp.partition]) for tp in tps]

    def assign(self, tps: Sequence[TopicPartition]) -> None:
        self.positions = {
            tp.partition: 0 if tp.offset == OFFSET_BEGINNING else tp.offset for tp in tps
        }

    def _next(self) -> FakeMessage | None:
        for p, offset in sorted(self.positions.items()):
            if offset < self.sizes[p]:
                self.positions[p] = offset + 1
                return FakeMessage(p, offset)
        return None

    def poll(self, timeout: float) -> FakeMessage | None:
        return self._next()

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        out = []
        while len(out) < n and (msg := self._next()) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.closed = True


class FakeDelivery:
    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def handle(self, events: Sequence[Any]) -> None:
        self.batches.append([(e.message.partition, e.message.offset) for e in events])
        self.started.set()
        await self.release.wait()


def build(
    monkeypatch: pytest.MonkeyPatch,
    main: FakeConsumer,
    legacy: FakeConsumer | None = None,
    linger: float = 0.0,
    batch_max: int = 1000,
) -> tuple[ConversionsReader, FakeDelivery]:
    def consumer(conf: dict[str, Any]) -> FakeConsumer:
        assert conf["group.id"] == "app-deliver"
        assert conf["enable.auto.commit"] is False
        return main

    def app_group_offsets(admin: Any, group: str) -> list[TopicPartition]:
        assert group == "app"
        assert legacy is not None, "the app's group was asked though the deliver group had all"
        return [TopicPartition(TOPIC, p, o) for p, o in legacy.committed_offsets.items()]

    monkeypatch.setattr(reader_mod, "Consumer", consumer)
    monkeypatch.setattr(reader_mod, "AdminClient", lambda conf: None)
    monkeypatch.setattr(reader_mod, "committed_offsets", app_group_offsets)
    delivery = FakeDelivery()
    conn = SimpleNamespace(librdkafka=lambda **extra: dict(extra))
    reader = ConversionsReader(
        SimpleNamespace(rebalancing=False),
        conn,  # type: ignore[arg-type]
        TOPIC,
        "app",
        delivery,  # type: ignore[arg-type]
        partitions=2,
        batch_max=batch_max,
        linger=linger,
        fetch_max_wait=0.1,
    )
    return reader, delivery


def held_at_delivery(
    monkeypatch: pytest.MonkeyPatch, main: FakeConsumer
) -> tuple[ConversionsReader, FakeDelivery]:
    """A reader on partition 0 whose delivery holds its first batch until released."""
    reader, delivery = build(monkeypatch, main)
    delivery.release.clear()
    reader.assign({0})
    return reader, delivery


@contextlib.asynccontextmanager
async def running(reader: ConversionsReader) -> AsyncIterator[None]:
    """Run the reader in the background for the block, then cancel it."""
    task = asyncio.ensure_future(reader.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_batch_is_committed_on_the_deliver_group_after_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = FakeConsumer({0: 5, 1: 3}, committed={0: 2, 1: 0})
    reader, delivery = build(monkeypatch, main)
    reader.assign({0, 1})
    async with running(reader):
        await until(lambda: main.committed_offsets == {0: 5, 1: 3})
    delivered = sorted(pair for batch in delivery.batches for pair in batch)
    assert delivered == [(0, 2), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)]  # from the commits on
    assert main.closed


async def test_nothing_is_committed_before_the_delivery_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = FakeConsumer({0: 3}, committed={0: 0})
    reader, delivery = held_at_delivery(monkeypatch, main)
    async with running(reader):
        await asyncio.wait_for(delivery.started.wait(), 5)
        await asyncio.sleep(0.05)
        assert main.commits == []
        delivery.release.set()
        await until(lambda: main.commits == [{0: 3}])


async def test_a_new_partition_starts_where_the_app_group_left_it_and_commits_that_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = FakeConsumer({0: 4, 1: 2}, committed={1: 1})
    legacy = FakeConsumer({0: 4, 1: 2}, committed={0: 3})
    reader, delivery = build(monkeypatch, main, legacy)
    delivery.release.clear()
    reader.assign({0, 1})
    async with running(reader):
        await asyncio.wait_for(delivery.started.wait(), 5)
        assert main.commits == [{0: 3}]  # partition 0's start, before anything is delivered
        delivery.release.set()
        await until(lambda: main.committed_offsets == {0: 4, 1: 2})
    assert sorted(pair for batch in delivery.batches for pair in batch) == [(0, 3), (1, 1)]


async def test_a_new_deployment_starts_at_the_first_record(monkeypatch: pytest.MonkeyPatch) -> None:
    main = FakeConsumer({0: 2})
    legacy = FakeConsumer({0: 2})
    reader, delivery = build(monkeypatch, main, legacy)
    reader.assign({0})
    async with running(reader):
        await until(lambda: main.committed_offsets == {0: 2})
    assert main.commits[0] == {0: 0}
    assert [pair for batch in delivery.batches for pair in batch] == [(0, 0), (0, 1)]


async def test_a_revoked_partition_s_batch_in_flight_finishes_and_commits_before_the_rebalance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = FakeConsumer({0: 3, 1: 3}, committed={0: 0, 1: 0})
    reader, delivery = build(monkeypatch, main)
    delivery.release.clear()
    reader.assign({0, 1})
    async with running(reader):
        await asyncio.wait_for(delivery.started.wait(), 5)
        revoking = asyncio.ensure_future(reader.revoke({0}))
        await asyncio.sleep(0.05)
        assert not revoking.done()  # the rebalance waits for the batch in flight
        delivery.release.set()
        await asyncio.wait_for(revoking, 5)
        assert main.commits == [{0: 3, 1: 3}]
        assert reader.owned == {1}


async def test_a_batch_still_in_flight_after_the_wait_commits_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader_mod, "REVOKE_WAIT", 0.05)
    main = FakeConsumer({0: 3}, committed={0: 0})
    reader, delivery = held_at_delivery(monkeypatch, main)
    async with running(reader):
        await asyncio.wait_for(delivery.started.wait(), 5)
        await reader.revoke({0})
        delivery.release.set()
        await asyncio.sleep(0.1)
        assert main.commits == []  # its next owner reads it again from offset 0
        assert reader.owned == set()


async def test_records_taken_while_a_rebalance_began_are_not_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = FakeConsumer({0: 3}, committed={0: 0})
    reader, delivery = build(monkeypatch, main, linger=5.0)  # the batch would wait 5 s
    reader.assign({0})
    async with running(reader):
        await until(lambda: main.positions.get(0) == 3)  # the three records are in the batch
        await reader.revoke({0})
        await asyncio.sleep(0.3)
        assert delivery.batches == []
        assert main.commits == []


async def test_a_partition_number_owns_the_conversions_partitions_of_that_number_modulo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A conversions topic made with more partitions than the lead agent's is read in full."""
    main = FakeConsumer({0: 1, 1: 1, 2: 1, 3: 1}, committed={0: 0, 1: 0, 2: 0, 3: 0})
    reader, delivery = build(monkeypatch, main)
    reader.assign({1})
    async with running(reader):
        await until(lambda: main.committed_offsets == {0: 0, 1: 1, 2: 0, 3: 1})
        assert reader.owned == {1, 3}


async def test_nothing_is_read_while_faust_rebalances(monkeypatch: pytest.MonkeyPatch) -> None:
    main = FakeConsumer({0: 2}, committed={0: 0})
    reader, delivery = build(monkeypatch, main)
    reader.app.rebalancing = True
    reader.assign({0})
    async with running(reader):
        await asyncio.sleep(0.3)
        assert delivery.batches == []
        reader.app.rebalancing = False
        await until(lambda: main.committed_offsets == {0: 2})


async def test_a_batch_that_failed_is_read_again_from_the_last_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    main = FakeConsumer({0: 3}, committed={0: 1})
    reader, delivery = build(monkeypatch, main)
    monkeypatch.setattr(reader_mod.asyncio, "sleep", fast_sleep)
    failures = [RuntimeError("Kafka rejected 1 records")]
    handle = delivery.handle

    async def failing_once(events: Sequence[Any]) -> None:
        await handle(events)
        if failures:
            raise failures.pop()

    delivery.handle = failing_once  # type: ignore[method-assign]
    reader.assign({0})
    async with running(reader):
        await until(lambda: main.committed_offsets == {0: 3})
    assert delivery.batches == [[(0, 1), (0, 2)], [(0, 1), (0, 2)]]  # the failed one, again
    assert main.commits == [{0: 3}]


_real_sleep = asyncio.sleep


async def fast_sleep(seconds: float) -> None:
    await _real_sleep(min(seconds, 0.01))
