"""Everything the agents write, produced with one librdkafka producer and flushed per batch.

Faust's own producer path costs more than the rest of an agent's work (README "Performance"), so
agents process ``take_events`` batches and write through :class:`Outputs`: output records,
dead letters, and table changes (the table's data is set directly and the change is produced
to the table's changelog topic, in the partition of the event being processed, exactly as Faust
would). :meth:`Outputs.flush` runs before a batch returns, and Faust acknowledges a batch only
after that: an offset is committed only when everything the batch wrote is durable.

Outputs are made durable before the state that records them. Without transactions the writes
of a batch land independently, so a crash could leave a changelog saying "QualifiedLead sent"
(or "dead-lettered") without the conversion (or dead letter) it refers to; the input would be
read again after the restart and skipped as a duplicate, and the conversion lost (the kill drill
caught it). :meth:`Outputs.flush` therefore flushes the outputs first and only then produces
and flushes the batch's changelog writes: a crash in between leaves outputs without state, the
input is processed again, and the repeated output carries the same deterministic ``event_id``.

Each agent writes through its own :class:`Outputs` (:meth:`Outputs.sibling` shares the one
producer): an agent's flush waits for exactly the records that agent queued, counted down by their
own delivery reports, and writes only that agent's changelog. A shared pending count reset by
whichever flush finished last let an agent acknowledge a batch whose outputs were still in flight
(issue 13).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer
from faust.streams import _current_event  # Faust's "current event": picks a table's partition
from faust.types import EventT, TableT

from streams.connection import KafkaConnection
from streams.errors import BrokerError
from streams.runtime.metrics import Metrics
from streams.runtime.tables import Tables
from streams.runtime.topics import Topics
from streams.serde.pipeline import DeadLetterOut

logger = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]] | None
_FLUSH_STEP = 0.1  # seconds per shared-producer flush while waiting for this agent's records


_CLIENT_LOG = logging.getLogger(f"{__name__}.librdkafka")
"""librdkafka's own lines (a broker down, a retry) go to the worker's log, in its format and
level filter, instead of raw to stderr; they are passed on when the producer is polled."""


def producer_for(conn: KafkaConnection) -> Producer:
    """Idempotent, acks=all, Kafka's murmur2 partitioner (the partitions Faust would pick)."""
    return Producer(
        conn.librdkafka(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
            }
        ),
        logger=_CLIENT_LOG,
    )


def in_event(event: EventT) -> None:
    """Make ``event`` Faust's current event, so table access uses its partition."""
    _current_event.set(weakref.ref(event))


Change = tuple[str, bytes, bytes | None, int]  # changelog, key, value (None: delete), partition


def merge_changes(changes: Sequence[Change]) -> list[Change]:
    """Keep only the last change of each key (per changelog and partition), in write order.

    A batch that writes one lead twice (its form and its status change arrive together) then
    produces one changelog record for it: the state the table holds after the batch.
    """
    last: dict[tuple[str, bytes, int], Change] = {}
    for change in changes:
        where = (change[0], change[1], change[3])
        last.pop(where, None)  # re-inserted at the end: the order of the last writes
        last[where] = change
    return list(last.values())


class Outputs:
    """Produces one agent's records and table changes; flush before acknowledging its batch."""

    def __init__(
        self,
        topics: Topics,
        tables: Tables,
        metrics: Metrics,
        producer: Any,
        *,
        flush_timeout: float = 60.0,
    ) -> None:
        """Bind the topics, tables and metrics.

        ``producer`` is a confluent_kafka.Producer (:func:`producer_for`), shared by every agent's
        Outputs; tests pass a fake with the same ``produce``/``poll``/``flush``.
        """
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.producer = producer
        self.flush_timeout = flush_timeout
        self._lock = threading.Lock()  # delivery reports arrive on whichever thread polls
        self._errors: list[str] = []
        self._unacked = 0  # this Outputs' records not yet acknowledged (or failed) by Kafka
        self._queued = 0
        self._changelog: list[Change] = []

    def sibling(self) -> Outputs:
        """Another agent's Outputs on the same producer, with its own pending records."""
        return Outputs(
            self.topics, self.tables, self.metrics, self.producer, flush_timeout=self.flush_timeout
        )

    def _on_delivery(self, err: Any, msg: Any) -> None:
        with self._lock:
            self._unacked -= 1
            if err is not None:
                self._errors.append(f"{msg.topic()}: {err}")

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers = None,
    ) -> None:
        """Queue one record (delivered by the next :meth:`flush` at the latest)."""
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers)
        with self._lock:
            self._unacked += 1  # before produce: a report may arrive on another thread at once
        try:
            try:
                self.producer.produce(topic, **kwargs)
            except BufferError:
                self.producer.poll(1.0)  # the local queue is full: let librdkafka drain it
                self.producer.produce(topic, **kwargs)
        except BaseException:
            with self._lock:
                self._unacked -= 1
            raise
        self._queued += 1
        if self._queued % 1000 == 0:
            self.producer.poll(0)

    def table_set(self, table: TableT, key: bytes, value: bytes, partition: int) -> None:
        """Set ``table[key]``; its changelog record is written by :meth:`flush`, after outputs."""
        table.data[key] = value
        self._changelog.append((table.changelog_topic.get_topic_name(), key, value, partition))

    def table_del(self, table: TableT, key: bytes, partition: int) -> None:
        """Delete ``table[key]``; its changelog tombstone is written by :meth:`flush`."""
        if key in table.data:
            del table.data[key]
        self._changelog.append((table.changelog_topic.get_topic_name(), key, None, partition))

    def send_dead(self, out: DeadLetterOut, partition: int) -> None:
        """Dead-letter one record once: ERROR log (no raw PII in messages), metric, send.

        ``partition`` is the partition of the event being processed (the ledger's changelog).
        """
        if out.source:
            key = out.source.encode()
            if self.tables.dead_lettered.data.get(key) is not None:
                self.metrics.core.labels("duplicate_dead_letter").inc()
                return
            stamp = str(int(time.time() * 1000)).encode()
            self.table_set(self.tables.dead_lettered, key, stamp, partition)
        logger.error("dead letter (%s) %s: %s", out.reason, out.source, out.message)
        self.metrics.dead_letters.labels(out.reason).inc()
        self.send(self.topics.dead_letter.get_topic_name(), out.key, out.value)

    async def flush(self) -> None:
        """Make the queued outputs durable, then the changelog writes; raise if anything failed.

        When the outputs fail, the batch's changelog writes are dropped, never produced by a
        later flush: a changelog must not record outputs that did not become durable. The
        batch is not acknowledged, so its inputs are read again after the restart that follows
        (liveness fails on the stalled commit) and, with the state recovered from the
        changelog, produce their outputs again.
        """
        try:
            await self._flush_queued()
        except BaseException:
            self._changelog = []
            raise
        if self._changelog:
            changes, self._changelog = self._changelog, []
            for topic, key, value, partition in merge_changes(changes):
                self.send(topic, key, value, partition)
            await self._flush_queued()

    async def _flush_queued(self) -> None:
        """Wait until Kafka acknowledged every record this Outputs queued; raise if one failed.

        The producer is shared, so its ``flush`` also waits for other agents' records: it is
        called in short steps and the wait ends as soon as this Outputs' own records are done.
        """
        deadline = time.monotonic() + self.flush_timeout
        while self._unacked > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                msg = (
                    f"{self._unacked} records were not acknowledged by Kafka "
                    f"within {self.flush_timeout:g}s"
                )
                raise BrokerError(msg)
            await asyncio.to_thread(self.producer.flush, min(left, _FLUSH_STEP))
        self._queued = 0
        if self._errors:
            with self._lock:
                errors, self._errors = self._errors, []
            msg = f"Kafka rejected {len(errors)} records, e.g. {errors[0]}"
            raise BrokerError(msg)
