"""Outputs: a batch's outputs are durable before the changelog writes that record them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.outputs import Outputs


class RecordingProducer:
    """Logs every produce and flush in order; every record is acknowledged."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def produce(self, topic: str, *, key: bytes | None = None, value: Any = None, **_: Any) -> None:
        self.log.append(("produce", topic))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        self.log.append(("flush",))
        return 0


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
        ("flush",),
        ("produce", "leads-changelog"),
        ("produce", "leads-changelog"),
        ("flush",),
    ]


def test_a_batch_without_table_changes_flushes_once() -> None:
    producer = RecordingProducer()
    outputs = Outputs(topics=Any, tables=Any, metrics=Any, producer=producer)  # type: ignore[arg-type]
    outputs.send("conversions", b"k", b"v")
    asyncio.run(outputs.flush())
    assert producer.log == [("produce", "conversions"), ("flush",)]
