"""Outputs.send_dead: the dead-letter ledger dead-letters each source record once."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

from streams.runtime.outputs import Outputs
from streams.serde.pipeline import DeadLetterOut
from tests.unit.runtime.test_outputs_failures import FakeProducer, _table


class FakeCounter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def labels(self, label: str) -> Any:
        return SimpleNamespace(inc=lambda: self.counts.update([label]))


def _outputs(producer: FakeProducer) -> tuple[Outputs, Any, Any]:
    ledger = _table("dead-lettered")
    metrics = SimpleNamespace(core=FakeCounter(), dead_letters=FakeCounter())
    topics = SimpleNamespace(dead_letter=SimpleNamespace(get_topic_name=lambda: "dead-letter"))
    tables = SimpleNamespace(dead_lettered=ledger)
    outputs = Outputs(topics=topics, tables=tables, metrics=metrics, producer=producer)  # type: ignore[arg-type]
    return outputs, ledger, metrics


def _letter(source: str) -> DeadLetterOut:
    return DeadLetterOut(b"lead-1", b"dead letter", "missing_field", "lead_id is blank", source)


def test_a_record_is_dead_lettered_once_and_the_ledger_written_after_it() -> None:
    producer = FakeProducer()
    outputs, ledger, metrics = _outputs(producer)

    outputs.send_dead(_letter("leads:1:7"), partition=1)
    outputs.send_dead(_letter("leads:1:7"), partition=1)  # the same record read again
    asyncio.run(outputs.flush())

    assert producer.produced("dead-letter") == [("produce", "dead-letter", b"lead-1", None)]
    assert producer.produced("dead-lettered-changelog") == [
        ("produce", "dead-lettered-changelog", b"leads:1:7", 1)  # the event's partition
    ]
    order = [e[1] for e in producer.log if e[0] == "produce"]
    assert order == ["dead-letter", "dead-lettered-changelog"]  # output first, then its state
    assert set(ledger.data) == {b"leads:1:7"}
    assert metrics.dead_letters.counts == Counter({"missing_field": 1})
    assert metrics.core.counts == Counter({"duplicate_dead_letter": 1})


def test_a_ledger_entry_from_before_a_restart_stops_a_second_dead_letter() -> None:
    producer = FakeProducer()
    outputs, ledger, metrics = _outputs(producer)
    ledger.data[b"leads:0:3"] = b"1700000000000"  # restored from the changelog

    outputs.send_dead(_letter("leads:0:3"), partition=0)
    asyncio.run(outputs.flush())

    assert producer.produced("dead-letter") == []
    assert metrics.core.counts == Counter({"duplicate_dead_letter": 1})


def test_a_dead_letter_without_a_source_is_sent_without_a_ledger_entry() -> None:
    producer = FakeProducer()
    outputs, ledger, _ = _outputs(producer)

    outputs.send_dead(_letter(""), partition=0)
    outputs.send_dead(_letter(""), partition=0)
    asyncio.run(outputs.flush())

    assert len(producer.produced("dead-letter")) == 2
    assert ledger.data == {} and producer.produced("dead-lettered-changelog") == []


def test_headers_travel_and_a_deleted_key_leaves_the_table() -> None:
    producer = FakeProducer()
    outputs, _, _ = _outputs(producer)
    leads = _table("leads")
    leads.data[b"lead-1"] = b"state"
    seen: list[Any] = []
    producer.produce = lambda topic, **kw: seen.append((topic, kw.get("headers")))  # type: ignore[method-assign]

    outputs.send("leads.form-submitted", b"k", b"v", headers=[("leadstream-redrive", b"1")])
    outputs.table_del(leads, b"lead-1", 0)

    assert seen == [("leads.form-submitted", [("leadstream-redrive", b"1")])]
    assert leads.data == {}


def test_a_long_batch_serves_delivery_callbacks_every_thousand_records() -> None:
    producer = FakeProducer()
    outputs, _, _ = _outputs(producer)
    for n in range(2500):
        outputs.send("conversions", str(n).encode(), b"v")
    assert [e for e in producer.log if e[0] == "poll"] == [("poll", 0), ("poll", 0)]
