"""Outputs: a batch's outputs are durable before the changelog writes that record them."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from streams.errors import BrokerError
from streams.runtime.outputs import Outputs, merge_changes
from tests.unit.runtime.producers import NoFlush, hold_the_loop_until


class RecordingProducer(NoFlush):
    """Logs every produce and poll in order; each poll acknowledges every queued record."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []
        self.reports: list[Any] = []
        self.values: list[bytes | None] = []

    def produce(
        self, topic: str, *, value: bytes | None = None, on_delivery: Any = None, **_: Any
    ) -> None:
        self.log.append(("produce", topic))
        self.values.append(value)
        self.reports.append(on_delivery)

    def poll(self, timeout: float) -> int:
        self.log.append(("poll",))
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, None)
        return len(reports)


def _table(name: str) -> Any:
    topic = SimpleNamespace(get_topic_name=lambda: f"{name}-changelog")
    return SimpleNamespace(data={}, changelog_topic=topic)


def test_changelog_writes_are_produced_only_after_the_outputs_are_flushed() -> None:
    producer = RecordingProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    leads = _table("leads")

    outputs.table_set(leads, b"lead-1", b"{state}", 2)
    outputs.send("conversions", b"lead-1", b"conversion")
    outputs.table_del(leads, b"lead-2", 3)
    assert leads.data == {b"lead-1": b"{state}"}  # the table itself changes at once
    asyncio.run(outputs.flush())

    assert producer.log == [
        ("produce", "conversions"),
        ("poll",),
        ("produce", "leads-changelog"),
        ("produce", "leads-changelog"),
        ("poll",),
    ]


def test_a_key_written_twice_in_a_batch_gets_one_changelog_record_with_its_last_value() -> None:
    producer = RecordingProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    leads = _table("leads")

    outputs.table_set(leads, b"lead-1", b"{form}", 2)
    outputs.table_set(leads, b"lead-2", b"{form}", 2)
    outputs.table_set(leads, b"lead-1", b"{form+status}", 2)
    outputs.table_del(leads, b"lead-2", 2)
    outputs.table_set(leads, b"lead-1", b"{other partition}", 3)  # another key of the changelog
    asyncio.run(outputs.flush())

    assert merge_changes(
        [("c", b"k", b"1", 0), ("c", b"j", b"1", 0), ("c", b"k", None, 0), ("d", b"k", b"2", 0)]
    ) == [("c", b"j", b"1", 0), ("c", b"k", None, 0), ("d", b"k", b"2", 0)]
    assert producer.log == [("produce", "leads-changelog")] * 3 + [("poll",)]
    assert producer.values == [b"{form+status}", None, b"{other partition}"]


def test_a_batch_without_table_changes_flushes_once() -> None:
    producer = RecordingProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    outputs.send("conversions", b"k", b"v")
    asyncio.run(outputs.flush())
    assert producer.log == [("produce", "conversions"), ("poll",)]


class HoldingProducer(NoFlush):
    """A shared producer whose acknowledgements the test controls.

    ``produce`` queues; ``poll`` acknowledges (calls ``on_delivery``) every queued record whose
    topic is not held. While ``gate`` is clear a poll blocks (a poll in progress in its thread).
    """

    def __init__(self) -> None:
        self.queue: list[tuple[str, Any]] = []
        self.held: set[str] = set()
        self.log: list[tuple[str, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def produce(self, topic: str, *, on_delivery: Any = None, **_: Any) -> None:
        with self.lock:
            self.queue.append((topic, on_delivery))
            self.log.append(("produce", topic))

    def _serve(self, timeout: float) -> int:
        self.gate.wait()
        with self.lock:
            ready = [q for q in self.queue if q[0] not in self.held]
            self.queue = [q for q in self.queue if q[0] in self.held]
            left = len(self.queue)
        for topic, callback in ready:
            self.log.append(("ack", topic))
            callback(None, SimpleNamespace(topic=lambda t=topic: t))
        if left and timeout > 0:
            time.sleep(min(timeout, 0.01))
        return left

    def poll(self, timeout: float) -> int:
        self._serve(timeout)
        return 0


def test_an_agent_waits_for_its_own_outputs_queued_while_another_agent_flushes() -> None:
    """Two agents share the worker's Outputs; B queues while A's flush runs (issue 13 §1)."""
    producer = HoldingProducer()
    shared = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    producer.held.add("b-out")

    async def scenario() -> None:
        shared.send("a-out", b"k", b"v")
        producer.gate.clear()  # A's wait is in progress in its thread
        a_flush = asyncio.create_task(shared.flush())
        await asyncio.sleep(0.05)
        shared.send("b-out", b"k", b"v")  # B queues an output Kafka has not acknowledged yet
        producer.gate.set()
        await asyncio.sleep(0.1)  # A's flush has had its acknowledgements
        b_flush = asyncio.create_task(shared.flush())
        await asyncio.sleep(0.1)
        assert not b_flush.done(), "B acknowledged its batch before its output was durable"
        producer.held.clear()
        await asyncio.wait_for(asyncio.gather(a_flush, b_flush), 5)

    asyncio.run(scenario())
    assert producer.log.index(("ack", "b-out")) > 0


def test_each_agent_waits_for_exactly_its_own_outputs_and_writes_only_its_own_changelog() -> None:
    """A's flush neither waits for B's held output nor writes B's changelog before it is durable."""
    producer = HoldingProducer()
    worker = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    a, b = worker, worker.sibling()
    leads, identity = _table("leads"), _table("identity")
    producer.held.add("b-out")

    async def scenario() -> None:
        a.send("a-out", b"k", b"v")
        a.table_set(leads, b"lead-1", b"{}", 0)
        b.send("b-out", b"k", b"v")
        b.table_set(identity, b"hash", b"lead-1", 0)
        b_flush = asyncio.create_task(b.flush())
        await asyncio.wait_for(a.flush(), 5)  # not held back by B's output
        assert ("produce", "leads-changelog") in producer.log
        assert ("produce", "identity-changelog") not in producer.log
        assert not b_flush.done()
        producer.held.clear()
        await asyncio.wait_for(b_flush, 5)

    asyncio.run(scenario())
    log = producer.log
    assert log.index(("ack", "a-out")) < log.index(("produce", "leads-changelog"))
    assert log.index(("ack", "b-out")) < log.index(("produce", "identity-changelog"))
    assert ("ack", "identity-changelog") in log


def test_the_changelog_goes_out_once_the_outputs_are_durable_while_the_loop_is_busy() -> None:
    """The lead agent's next batch holds the event loop while its last batch finishes.

    The changelog writes must not wait for the loop's next turn: they are produced, and waited
    for, as soon as Kafka acknowledged the batch's outputs, still never before.
    """
    producer = HoldingProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    leads = _table("leads")
    outputs.send("out", b"lead-1", b"conversion")
    outputs.table_set(leads, b"lead-1", b"{state}", 0)
    producer.held.add("out")

    async def scenario() -> None:
        finishing = asyncio.create_task(outputs.flush())
        await asyncio.sleep(0.02)  # the wait is in its thread
        assert ("produce", "leads-changelog") not in producer.log  # outputs not durable yet
        producer.held.clear()  # Kafka acknowledges the outputs while the loop is busy
        changelog_durable = hold_the_loop_until(lambda: ("ack", "leads-changelog") in producer.log)
        assert changelog_durable, "the changelog waited for the loop"
        await asyncio.wait_for(finishing, 5)

    asyncio.run(scenario())
    log = producer.log
    assert log.index(("ack", "out")) < log.index(("produce", "leads-changelog"))


def test_a_flush_that_kafka_never_acknowledges_fails_after_the_timeout() -> None:
    producer = HoldingProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer, flush_timeout=0.2)  # type: ignore[arg-type]
    producer.held.add("out")
    outputs.send("out", b"k", b"v")
    with pytest.raises(BrokerError, match="1 records were not acknowledged"):
        asyncio.run(outputs.flush())


class SilentProducer(NoFlush):
    """Kafka never answers: each poll waits its whole timeout and is counted."""

    def __init__(self) -> None:
        self.polls = 0

    def produce(self, topic: str, **_: Any) -> None:
        pass

    def poll(self, timeout: float) -> int:
        self.polls += 1
        time.sleep(timeout)
        return 0


def test_a_cancelled_wait_stops_polling() -> None:
    """An agent stopped while its batch waits leaves no thread polling until the timeout."""
    producer = SilentProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer, flush_timeout=60)  # type: ignore[arg-type]
    outputs.send("out", b"k", b"v")

    async def scenario() -> None:
        wait = asyncio.create_task(outputs.flush())
        await asyncio.sleep(0.15)
        wait.cancel()
        with pytest.raises(asyncio.CancelledError):
            await wait
        await asyncio.sleep(0.25)  # the thread notices within one poll step (0.1 s)
        polls = producer.polls
        await asyncio.sleep(0.3)
        assert producer.polls == polls, "the cancelled wait's thread is still polling"

    asyncio.run(scenario())


def test_waits_on_kafka_leave_the_default_executor_free() -> None:
    """While every agent's batch waits on a silent Kafka, a request still gets a thread.

    The Events API requests and the lag probe run on asyncio's default executor; the waits run
    on the Outputs' own pool, so they cannot hold every thread of it until the flush timeout.
    """
    producer = SilentProducer()
    first = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer, flush_timeout=60)  # type: ignore[arg-type]
    every = [first, first.sibling(), first.sibling()]

    async def scenario() -> None:
        default = ThreadPoolExecutor(max_workers=len(every))
        asyncio.get_running_loop().set_default_executor(default)
        for outputs in every:
            outputs.send("out", b"k", b"v")
        waits = [asyncio.create_task(outputs.flush()) for outputs in every]
        await asyncio.sleep(0.15)  # every wait is polling
        try:
            answer = await asyncio.wait_for(asyncio.to_thread(lambda: "sent"), timeout=2)
            assert answer == "sent"
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    asyncio.run(scenario())
