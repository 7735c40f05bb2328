"""Outputs when Kafka fails: a failed flush raises and writes no changelog record for the batch;
a full local queue is retried once drained; every changelog write keeps its partition."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from streams.errors import BrokerError
from streams.runtime.outputs import Outputs
from tests.unit.runtime.producers import NoFlush


class FakeProducer(NoFlush):
    """Records every produce (with its partition) and poll; can fail the way librdkafka does.

    ``fail_topics``: records of these topics get a delivery-callback error when polled.
    ``unacked``: how many of the last records never get a delivery report (a flush timeout).
    ``full``: how many produce calls raise BufferError (the local queue is full) first.
    """

    def __init__(self, fail_topics: tuple[str, ...] = (), unacked: int = 0, full: int = 0) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.fail_topics = fail_topics
        self.unacked = unacked
        self.full = full
        self._callbacks: list[tuple[str, Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.full:
            self.full -= 1
            self.log.append(("full", topic))
            msg = "Local: Queue full"
            raise BufferError(msg)
        self.log.append(("produce", topic, kwargs.get("key"), kwargs.get("partition")))
        self._callbacks.append((topic, kwargs["on_delivery"]))

    def poll(self, timeout: float) -> int:
        self.log.append(("poll", timeout))
        # The last ``unacked`` records never get their delivery report (Kafka is unreachable).
        keep = len(self._callbacks) if self.unacked >= len(self._callbacks) else self.unacked
        callbacks = self._callbacks[: len(self._callbacks) - keep]
        self._callbacks = self._callbacks[len(self._callbacks) - keep :]
        for topic, callback in callbacks:
            err = "Broker: Not enough in-sync replicas" if topic in self.fail_topics else None
            callback(err, SimpleNamespace(topic=lambda t=topic: t))
        if not callbacks:
            time.sleep(min(timeout, 0.01))  # librdkafka's poll blocks until a report or timeout
        return len(callbacks)

    def produced(self, topic: str) -> list[tuple[Any, ...]]:
        return [e for e in self.log if e[0] == "produce" and e[1] == topic]


def _table(name: str) -> Any:
    topic = SimpleNamespace(get_topic_name=lambda: f"{name}-changelog")
    return SimpleNamespace(data={}, changelog_topic=topic)


def _outputs(producer: FakeProducer) -> Outputs:
    return Outputs(  # a short flush timeout: the flush-timeout case waits for all of it
        topics=Any,  # type: ignore[arg-type]
        tables=Any,  # type: ignore[arg-type]
        metrics=Any,  # type: ignore[arg-type]
        producer=producer,
        flush_timeout=0.3,
    )


def _batch(outputs: Outputs, leads: Any) -> None:
    outputs.send("conversions", b"lead-1", b"conversion")
    outputs.table_set(leads, b"lead-1", b"sent", 2)


@pytest.mark.parametrize(
    ("producer", "says"),
    [
        (FakeProducer(fail_topics=("conversions",)), "Kafka rejected 1 records"),
        (FakeProducer(unacked=1), "1 records were not acknowledged by Kafka"),
    ],
    ids=["delivery-callback-error", "flush-timeout"],
)
def test_a_failed_output_flush_raises_and_writes_no_changelog(
    producer: FakeProducer, says: str
) -> None:
    outputs, leads = _outputs(producer), _table("leads")
    _batch(outputs, leads)

    with pytest.raises(BrokerError, match=says):
        asyncio.run(outputs.flush())

    # The conversion may not exist, so no state may claim it: nothing reached the changelog.
    assert producer.produced("leads-changelog") == []


def test_a_failed_changelog_flush_raises_too() -> None:
    producer = FakeProducer(fail_topics=("leads-changelog",))
    outputs, leads = _outputs(producer), _table("leads")
    _batch(outputs, leads)

    with pytest.raises(BrokerError, match="leads-changelog"):
        asyncio.run(outputs.flush())

    assert [e[0] for e in producer.log] == ["produce", "poll", "produce", "poll"]


def test_a_full_local_queue_is_drained_and_the_record_produced_once() -> None:
    producer = FakeProducer(full=1)
    outputs = _outputs(producer)

    outputs.send("conversions", b"lead-1", b"conversion")
    asyncio.run(outputs.flush())

    assert producer.log[:3] == [
        ("full", "conversions"),
        ("poll", 1.0),  # librdkafka drains its queue before the one retry
        ("produce", "conversions", b"lead-1", None),
    ]
    assert len(producer.produced("conversions")) == 1


def test_a_queue_still_full_after_draining_raises() -> None:
    producer = FakeProducer(full=2)
    outputs = _outputs(producer)
    with pytest.raises(BufferError):
        outputs.send("conversions", b"lead-1", b"conversion")


def test_every_changelog_write_keeps_the_partition_of_its_event() -> None:
    producer = FakeProducer()
    outputs = _outputs(producer)
    leads, ledger = _table("leads"), _table("ledger")

    outputs.table_set(leads, b"lead-1", b"state", 2)
    outputs.table_del(leads, b"lead-2", 3)
    outputs.table_set(ledger, b"evt-1", b"1", 0)
    outputs.send("conversions", b"lead-1", b"conversion")  # outputs: Kafka picks by key
    asyncio.run(outputs.flush())

    assert producer.produced("leads-changelog") == [
        ("produce", "leads-changelog", b"lead-1", 2),
        ("produce", "leads-changelog", b"lead-2", 3),
    ]
    assert producer.produced("ledger-changelog") == [("produce", "ledger-changelog", b"evt-1", 0)]
    assert producer.produced("conversions") == [("produce", "conversions", b"lead-1", None)]


def test_a_failed_batch_changelog_is_never_written_by_a_later_flush() -> None:
    producer = FakeProducer(fail_topics=("conversions",))
    outputs, leads = _outputs(producer), _table("leads")
    _batch(outputs, leads)
    with pytest.raises(BrokerError):
        asyncio.run(outputs.flush())

    producer.fail_topics = ()  # Kafka is healthy again; the restarted agent's next batch
    outputs.send("conversions", b"lead-9", b"another conversion")
    asyncio.run(outputs.flush())

    assert producer.produced("leads-changelog") == []
