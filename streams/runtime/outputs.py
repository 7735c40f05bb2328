"""Everything the agents write, produced with librdkafka producers and flushed per batch.

Faust's own producer path costs more than the rest of an agent's work (README "Performance"), so
agents process ``take_events`` batches and write through :class:`Outputs`: output records,
dead letters, and table changes (the table's data is set directly and the change is produced
to the table's changelog topic, in the partition of the event being processed, exactly as Faust
would). A batch's events are acknowledged only after :meth:`Outputs.flush` (or
:meth:`Outputs.finish`) made what the batch wrote durable, so an offset is committed only when
everything its batch wrote is durable. The lead agent hands each batch to a :class:`Finisher`,
which finishes it in the background while the agent works on the next batch.

Outputs are made durable before the state that records them. Without transactions the writes
of a batch land independently, so a crash could leave a changelog saying "QualifiedLead sent"
(or "dead-lettered") without the conversion (or dead letter) it refers to; the input would be
read again after the restart and skipped as a duplicate, and the conversion lost (the kill drill
caught it). :meth:`Outputs.flush` therefore flushes the outputs first and only then produces
and flushes the batch's changelog writes: a crash in between leaves outputs without state, the
input is processed again, and the repeated output carries the same deterministic ``event_id``.

Each agent writes through its own :class:`Outputs` (:meth:`Outputs.sibling` shares a producer: the
deliver agents have one of their own, the other agents share the first), and each batch through
its own :class:`Batch`: a flush waits for exactly the records
that batch queued, counted down by their own delivery reports, and writes only that batch's
changelog. A shared pending count reset by
whichever flush finished last let an agent acknowledge a batch whose outputs were still in flight
(issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
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
_POLL_STEP = 0.1  # longest single wait for delivery reports (a poll returns at the first)
# Threads for the waits on Kafka: one per agent's Outputs that can wait at once (the lead,
# bookings, identity, fan-out and two deliver agents), kept apart from asyncio's default
# executor so the Events API requests and the lag probe never queue behind a wait that lasts
# until the flush timeout while Kafka is down. Threads start only when a wait needs one.
_WAIT_THREADS = 8


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


class Batch:
    """The records one batch queued, counted down by their own delivery reports."""

    __slots__ = ("_lock", "changelog", "errors", "queued", "unacked")

    def __init__(self) -> None:
        """Start empty."""
        self._lock = threading.Lock()  # delivery reports arrive on whichever thread polls
        self.unacked = 0  # records not yet acknowledged (or failed) by Kafka
        self.queued = 0  # records produced: the producer is polled every 1,000
        self.errors: list[str] = []
        self.changelog: list[Change] = []

    def on_delivery(self, err: Any, msg: Any) -> None:
        """Count down one of this batch's records (librdkafka's delivery report)."""
        with self._lock:
            self.unacked -= 1
            if err is not None:
                self.errors.append(f"{msg.topic()}: {err}")

    def add(self, n: int) -> None:
        """Count ``n`` records queued (negative: taken back)."""
        with self._lock:
            self.unacked += n

    def take_errors(self) -> list[str]:
        """Return the failures reported so far, and forget them."""
        with self._lock:
            errors, self.errors = self.errors, []
        return errors


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
        waits: Executor | None = None,
    ) -> None:
        """Bind the topics, tables and metrics.

        ``producer`` is a confluent_kafka.Producer (:func:`producer_for`), shared by the siblings
        that write on it; tests pass a fake with the same ``produce``/``poll`` (``flush`` is never
        called). ``waits`` runs the waits for Kafka's acknowledgements (None: a new pool, shared
        with the siblings).
        """
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.producer = producer
        self.flush_timeout = flush_timeout
        self._waits = waits or ThreadPoolExecutor(
            max_workers=_WAIT_THREADS, thread_name_prefix="leadstream-kafka-wait"
        )
        self._batch = Batch()  # what the batch being worked on queued so far

    def sibling(self, producer: Any = None) -> Outputs:
        """Another agent's Outputs with its own pending records, on the same waits pool.

        It writes on this producer, or on ``producer`` (the deliver agents' own: worker.py).
        """
        return Outputs(
            self.topics,
            self.tables,
            self.metrics,
            self.producer if producer is None else producer,
            flush_timeout=self.flush_timeout,
            waits=self._waits,
        )

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers = None,
        *,
        batch: Batch | None = None,
    ) -> None:
        """Queue one record (delivered by the next :meth:`flush` at the latest).

        ``batch`` is the batch it counts in: by default the one being worked on.
        """
        batch = self._batch if batch is None else batch
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": batch.on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers)
        batch.add(1)  # before produce: a report may arrive on another thread at once
        try:
            try:
                self.producer.produce(topic, **kwargs)
            except BufferError:
                self.producer.poll(1.0)  # the local queue is full: let librdkafka drain it
                self.producer.produce(topic, **kwargs)
        except BaseException:
            batch.add(-1)
            raise
        batch.queued += 1
        if batch.queued % 1000 == 0:
            self.producer.poll(0)

    def table_set(self, table: TableT, key: bytes, value: bytes, partition: int) -> None:
        """Set ``table[key]``; its changelog record is written by :meth:`flush`, after outputs."""
        table.data[key] = value
        self._batch.changelog.append(
            (table.changelog_topic.get_topic_name(), key, value, partition)
        )

    def table_del(self, table: TableT, key: bytes, partition: int) -> None:
        """Delete ``table[key]``; its changelog tombstone is written by :meth:`flush`."""
        if key in table.data:
            del table.data[key]
        self._batch.changelog.append((table.changelog_topic.get_topic_name(), key, None, partition))

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

    def cut(self) -> Batch:
        """Close the batch being worked on and start the next: :meth:`finish` the one returned."""
        batch, self._batch = self._batch, Batch()
        return batch

    async def flush(self) -> None:
        """Make what was queued since the last cut durable (:meth:`finish`); raise on failure."""
        await self.finish(self.cut())

    async def finish(self, batch: Batch) -> None:
        """Make ``batch``'s outputs durable, then its changelog writes; raise if anything failed.

        When the outputs fail, the batch's changelog writes are dropped, never produced by a
        later flush: a changelog must not record outputs that did not become durable. The
        batch is not acknowledged, so its inputs are read again after the restart that follows
        (liveness fails on the stalled commit) and, with the state recovered from the
        changelog, produce their outputs again.

        Both steps run in one thread of the Outputs' own pool (:meth:`_finish_blocking`), so
        the changelog writes go out as soon as Kafka acknowledged the outputs, not at the
        event loop's next turn (the lead agent's next batch holds the loop for 100 ms or more).
        The wait ends at the report of the batch's last record and wakes the loop once. It
        does not call the producer's ``flush``: the producer is shared, ``flush`` waits for
        every agent's records and sends each record at once, ignoring ``linger.ms``.
        """
        if batch.unacked > 0 or batch.changelog:
            stop = threading.Event()
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._waits, self._finish_blocking, batch, stop
                )
            finally:
                stop.set()  # a cancelled wait stops its thread polling and writes no changelog
        if batch.unacked > 0:
            msg = (
                f"{batch.unacked} records were not acknowledged by Kafka "
                f"within {self.flush_timeout:g}s"
            )
            raise BrokerError(msg)
        errors = batch.take_errors()
        if errors:
            msg = f"Kafka rejected {len(errors)} records, e.g. {errors[0]}"
            raise BrokerError(msg)

    def _finish_blocking(self, batch: Batch, stop: threading.Event) -> None:
        """Wait for ``batch``'s outputs; only if all are durable, write and wait for its changelog.

        Runs in a thread. Returns early (the caller raises) when a wait times out, when Kafka
        rejected a record or when the caller stopped waiting; the changelog writes are then
        dropped, so no later flush writes them.
        """
        changes, batch.changelog = batch.changelog, []
        self._poll_until_done(batch, time.monotonic() + self.flush_timeout, stop)
        if batch.unacked > 0 or batch.errors or stop.is_set() or not changes:
            return
        for topic, key, value, partition in merge_changes(changes):
            self.send(topic, key, value, partition, batch=batch)
        self._poll_until_done(batch, time.monotonic() + self.flush_timeout, stop)

    def _poll_until_done(self, batch: Batch, deadline: float, stop: threading.Event) -> None:
        """Serve delivery reports (any agent's) until ``batch``'s are all in (a thread)."""
        while batch.unacked > 0 and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.producer.poll(min(left, _POLL_STEP))


class Finisher:
    """Finishes an agent's batches in the background, in order, one at a time.

    The agent takes its events with ``take_events(..., acks=False)`` and calls :meth:`done`
    when it has queued a batch's outputs: the batch is made durable (:meth:`Outputs.finish`)
    and only then acknowledged, while the agent works on its next batch. Batches finish in
    order and at most one is in flight, so an offset is still committed only after everything
    its batch wrote is durable; the tables are set at once, so the next batch already sees the
    previous one's state.
    """

    def __init__(self, stream: Any, outputs: Outputs) -> None:
        """Finish the batches ``outputs`` queued for the events of ``stream``."""
        self.stream = stream
        self.outputs = outputs
        self._task: asyncio.Future[None] | None = None

    async def done(self, events: Sequence[EventT]) -> None:
        """Hand over the batch just worked on; returns once the previous batch is finished.

        Raises the previous batch's failure (its events stay unacknowledged).
        """
        batch = self.outputs.cut()
        await self.wait()
        self._task = asyncio.ensure_future(self._finish(batch, list(events)))
        # One turn of the loop lets the task start its wait in a thread now. Without it the
        # wait began only at the loop's next turn, after the agent's next batch (which holds
        # the loop while its events are buffered), and the agent then waited for all of it.
        await asyncio.sleep(0)

    async def wait(self) -> None:
        """Wait until the batch in flight is finished; raise its failure."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)  # cancelling the agent leaves the batch finishing
            self._task = None

    async def close(self) -> None:
        """Let the batch in flight finish when the agent stops (its failure is already logged)."""
        with contextlib.suppress(Exception):
            await self.wait()

    async def _finish(self, batch: Batch, events: list[EventT]) -> None:
        try:
            await self.outputs.finish(batch)
        except Exception as exc:
            logger.error("a batch of %d events was not made durable: %s", len(events), exc)
            raise
        for event in events:
            await self.stream.ack(event)
