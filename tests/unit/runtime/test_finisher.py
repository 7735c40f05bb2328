"""Finisher: an agent's batch is made durable and acknowledged in the background, in order,
while the agent works on the next batch; a batch that fails is never acknowledged."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from streams.errors import BrokerError
from streams.runtime.outputs import Finisher, Outputs
from tests.unit.runtime.producers import NoFlush, hold_the_loop_until


class GatedProducer(NoFlush):
    """Acknowledges records (their delivery reports) only while the test has opened the gate.

    ``fail_keys``: records with these keys get a delivery error instead.
    """

    def __init__(self, fail_keys: tuple[bytes, ...] = ()) -> None:
        self.gate = threading.Event()
        self.fail_keys = fail_keys
        self.log: list[tuple[str, bytes | None]] = []
        self._callbacks: list[tuple[str, bytes | None, Any]] = []
        self._lock = threading.Lock()

    def produce(self, topic: str, **kwargs: Any) -> None:
        with self._lock:
            self.log.append((topic, kwargs.get("key")))
            self._callbacks.append((topic, kwargs.get("key"), kwargs["on_delivery"]))

    def poll(self, timeout: float) -> int:
        if not self.gate.wait(timeout):
            return 0
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        for topic, key, callback in callbacks:
            err = "Broker: Not enough in-sync replicas" if key in self.fail_keys else None
            callback(err, SimpleNamespace(topic=lambda t=topic: t))
        return len(callbacks)


class Stream:
    """What Finisher needs of a Faust stream: ``ack``, recorded."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        return True


def _leads() -> Any:
    topic = SimpleNamespace(get_topic_name=lambda: "leads-changelog")
    return SimpleNamespace(data={}, changelog_topic=topic)


def _outputs(producer: GatedProducer) -> Outputs:
    return Outputs(
        topics=Any,  # type: ignore[arg-type]
        tables=Any,  # type: ignore[arg-type]
        metrics=Any,  # type: ignore[arg-type]
        producer=producer,
        flush_timeout=5.0,
    )


def _work(outputs: Outputs, leads: Any, lead: bytes) -> None:
    """One batch's work: a conversion and the state that records it."""
    outputs.send("conversions", lead, b"conversion")
    outputs.table_set(leads, lead, b"sent", 0)


class Rig:
    """A Finisher over a gated producer, with its first batch (lead-1, event-1) handed over."""

    def __init__(self, producer: GatedProducer) -> None:
        self.producer, self.stream, self.leads = producer, Stream(), _leads()
        self.outputs = _outputs(producer)
        self.finisher = Finisher(self.stream, self.outputs)

    @classmethod
    async def started(cls, producer: GatedProducer) -> Rig:
        rig = cls(producer)
        _work(rig.outputs, rig.leads, b"lead-1")
        await asyncio.wait_for(rig.finisher.done(["event-1"]), 1)  # nothing in flight: at once
        return rig


async def _in_order() -> dict[str, Any]:
    producer = GatedProducer()
    rig = await Rig.started(producer)
    stream, leads, outputs, finisher = rig.stream, rig.leads, rig.outputs, rig.finisher
    seen: dict[str, Any] = {}
    _work(outputs, leads, b"lead-2")  # the next batch, while the first is not durable
    second = asyncio.ensure_future(finisher.done(["event-2"]))
    await asyncio.sleep(0.3)
    seen["second_waited"] = not second.done()
    seen["acked_before_durable"] = list(stream.acked)
    seen["state_seen_by_next_batch"] = leads.data.get(b"lead-1")

    producer.gate.set()  # Kafka acknowledges
    await asyncio.wait_for(second, 5)
    seen["acked_once_first_done"] = list(stream.acked)
    await asyncio.wait_for(finisher.wait(), 5)
    seen["acked_at_end"] = list(stream.acked)
    seen["log"] = list(producer.log)
    return seen


def test_the_next_batch_is_worked_on_while_the_last_is_made_durable_and_acks_follow_in_order() -> (
    None
):
    seen = asyncio.run(_in_order())

    # The second batch was worked on and handed over while the first was in flight: done()
    # waited for the first batch, nothing was acknowledged before Kafka had it, and the second
    # batch already saw the first one's state.
    assert seen["second_waited"]
    assert seen["acked_before_durable"] == []
    assert seen["state_seen_by_next_batch"] == b"sent"
    # done() returned once the first batch was acknowledged; the second, its records let
    # through by the same open gate, may be acknowledged by then too, but never before it.
    assert seen["acked_once_first_done"][:1] == ["event-1"]
    assert seen["acked_at_end"] == ["event-1", "event-2"]
    # Each batch's changelog write follows its own outputs, and only its own: the first
    # batch's changelog held lead-1 alone although lead-2 was written meanwhile.
    assert seen["log"] == [
        ("conversions", b"lead-1"),
        ("conversions", b"lead-2"),
        ("leads-changelog", b"lead-1"),
        ("leads-changelog", b"lead-2"),
    ]


async def _finished_while_the_loop_is_held() -> tuple[bool, list[str]]:
    producer = GatedProducer()
    producer.gate.set()  # Kafka acknowledges at once
    rig = Rig(producer)
    _work(rig.outputs, rig.leads, b"lead-1")
    await rig.finisher.done(["event-1"])  # as the agent does: no extra turn of the loop
    # The next batch holds the loop; the batch handed over must still become durable meanwhile.
    durable = hold_the_loop_until(lambda: ("leads-changelog", b"lead-1") in producer.log)
    await asyncio.wait_for(rig.finisher.wait(), 5)
    return durable, rig.stream.acked


def test_a_batch_handed_over_becomes_durable_while_the_next_batch_holds_the_loop() -> None:
    durable, acked = asyncio.run(_finished_while_the_loop_is_held())
    assert durable, "the batch's wait started only at the loop's next turn"
    assert acked == ["event-1"]


async def _failing() -> tuple[BaseException | None, list[str], list[tuple[str, bytes | None]]]:
    producer = GatedProducer(fail_keys=(b"lead-1",))
    producer.gate.set()
    rig = await Rig.started(producer)
    _work(rig.outputs, rig.leads, b"lead-2")
    raised: BaseException | None = None
    try:
        await asyncio.wait_for(rig.finisher.done(["event-2"]), 5)
    except BrokerError as exc:
        raised = exc
    return raised, rig.stream.acked, producer.log


def test_a_batch_that_was_not_made_durable_is_never_acknowledged_and_stops_the_agent() -> None:
    raised, acked, log = asyncio.run(_failing())

    assert isinstance(raised, BrokerError)
    assert "Kafka rejected 1 records" in str(raised)
    assert acked == []  # neither the failed batch nor the one after it
    assert ("leads-changelog", b"lead-1") not in log  # no state for an output that failed


async def _close_waits() -> list[str]:
    producer = GatedProducer()
    rig = await Rig.started(producer)
    threading.Timer(0.2, producer.gate.set).start()
    await asyncio.wait_for(rig.finisher.close(), 5)
    return rig.stream.acked


def test_closing_lets_the_batch_in_flight_finish() -> None:
    assert asyncio.run(_close_waits()) == ["event-1"]


@pytest.mark.parametrize("fail", [False, True])
def test_close_never_raises(fail: bool) -> None:
    async def run() -> list[str]:
        producer = GatedProducer(fail_keys=(b"lead-1",) if fail else ())
        producer.gate.set()
        rig = await Rig.started(producer)
        await asyncio.wait_for(rig.finisher.close(), 5)
        return rig.stream.acked

    assert asyncio.run(run()) == ([] if fail else ["event-1"])


async def _cancelled_while_waiting() -> list[str]:
    producer = GatedProducer()
    rig = await Rig.started(producer)
    _work(rig.outputs, rig.leads, b"lead-2")
    waiting = asyncio.ensure_future(rig.finisher.done(["event-2"]))
    await asyncio.sleep(0.1)
    waiting.cancel()  # the worker stops while the agent waits for the first batch
    threading.Timer(0.2, producer.gate.set).start()
    await asyncio.wait_for(rig.finisher.close(), 5)
    return rig.stream.acked


def test_an_agent_stopped_while_waiting_still_lets_the_batch_in_flight_finish() -> None:
    # The first batch is acknowledged; the second was never handed over, so it is read again.
    assert asyncio.run(_cancelled_while_waiting()) == ["event-1"]
