"""The conversions reader: TikTok's delivery reads ``leadstream.conversions`` outside Faust.

Faust costs about 100 µs of CPU per record it hands an agent, against under 10 µs for a plain
librdkafka consumer (README "Performance"); the conversions were the third record per lead
through Faust. This reader consumes them with a confluent-kafka consumer and hands each batch
to :meth:`Delivery.handle`, exactly as the ``deliver`` agent did.

* **Which partitions.** The ones whose number Faust gave this worker for the lead agent's
  topics. Every topic and table of the app has the same partition count, so Faust's assignor
  puts partition *p* of the ``delivered`` ledger's changelog on the same worker: the ledger
  lookups and writes stay local, as with the agent.
* **Progress** is the committed offset of a group of its own, ``<app id>-deliver``
  (:func:`streams.domain.reading.deliver_group`), which has no members: the reader assigns
  its partitions itself and commits a batch's offsets only after :meth:`Delivery.handle`
  returned, once every outcome is durable (domain.md §7). A partition new to the group starts
  where the app's own group left it (a worker from before this reader), else at its first
  record, and that start is committed at once.
* **Rebalances.** When Faust revokes partitions, the reader stops taking records, lets the
  batch in flight finish and commit (up to :data:`REVOKE_WAIT` seconds), and reads nothing
  until the rebalance and table recovery are over; then it seeks every partition it owns to
  its committed offset. Records fetched and not delivered are read again from there. A batch
  still in flight after the wait is not committed: its next owner sends it again (the
  platform merges the copies by ``event_id``), as after a kill.
* **Batches.** Up to ``delivery_batch_max`` records or ``delivery_linger`` seconds; a
  part-full batch waits more windows while the backlog would fill it
  (:func:`streams.domain.reading.wait_again`). Linger 0 delivers what has arrived at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.connection import KafkaConnection
from streams.domain import reading
from streams.errors import BrokerError
from streams.ops.lag import committed_offsets
from streams.runtime.delivery import Delivery
from streams.runtime.faust_repairs import records_waiting

logger = logging.getLogger(__name__)

REVOKE_WAIT = 10.0  # seconds a rebalance waits for the batch in flight to finish and commit
_STEP = 0.1  # longest single wait for records: assignment changes are noticed within it


def _on_commit(err: Any, partitions: Any) -> None:
    """Log a commit the broker refused (librdkafka's callback; the next commit covers it)."""
    if err is not None:
        logger.warning("conversions: commit failed, the next batch's commit retries: %s", err)


class Message:
    """What :class:`Delivery` reads of a Faust message, from a librdkafka one."""

    __slots__ = ("key", "offset", "partition", "topic", "value")

    def __init__(self, msg: Any) -> None:
        """Copy ``msg``'s coordinates, key and value."""
        self.topic: str = msg.topic()
        self.partition: int = msg.partition()
        self.offset: int = msg.offset()
        self.key: bytes | None = msg.key()
        self.value: bytes | None = msg.value()


class Event:
    """A stand-in for Faust's event: Faust's current event (tables) keeps a weak reference."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Message) -> None:
        """Wrap ``message``."""
        self.message = message


class ConversionsReader:
    """Delivers this worker's partitions of the conversions topic through one :class:`Delivery`."""

    def __init__(
        self,
        app: Any,
        conn: KafkaConnection,
        topic: str,
        app_id: str,
        delivery: Delivery,
        *,
        partitions: int,
        batch_max: int,
        linger: float,
        fetch_max_wait: float,
        upstream: Callable[[], int] = lambda: 0,
    ) -> None:
        """Bind the app (its rebalance state), the topic and the delivery; nothing connects yet.

        ``upstream`` counts the records waiting upstream (the lead agent's inputs), for the
        backlog a part-full batch waits for.
        """
        self.app = app
        self.conn = conn
        self.topic = topic
        self.app_id = app_id
        self.group = reading.deliver_group(app_id)
        self.delivery = delivery
        self.partitions = partitions  # of the lead agent's topics (Faust's copartitioned group)
        self.batch_max = batch_max
        self.linger = linger
        self.fetch_max_wait = fetch_max_wait
        self.upstream = upstream
        self.owned: set[int] = set()  # conversions partitions read and delivered from
        self._numbers: set[int] = set()  # the lead agent's partitions they were chosen for
        self._target: set[int] | None = None  # an assignment to apply before reading on
        self._idle = asyncio.Event()  # no batch being delivered
        self._idle.set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadstream-conversions")
        self._consumer: Consumer | None = None

    # -- Faust's rebalance -----------------------------------------------------------------------

    def assign(self, partitions: set[int]) -> None:
        """Faust assigned these partition numbers to this worker (the whole new assignment)."""
        self._target = set(partitions)

    async def revoke(self, partitions: set[int]) -> None:
        """Faust revoked these partitions: stop, and let the batch in flight finish first."""
        self._target = (self._numbers if self._target is None else self._target) - partitions
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), REVOKE_WAIT)
        if not self._idle.is_set():
            logger.warning(
                "conversions: a batch was still being delivered %.0fs after partitions %s were "
                "revoked; it will not be committed, and their next owner sends it again",
                REVOKE_WAIT,
                ",".join(map(str, sorted(partitions))),
            )
        self._numbers -= partitions
        self.owned = {p for p in self.owned if p % self.partitions not in partitions}

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read, deliver, commit, until cancelled (the consumer is closed then)."""
        try:
            await self._run()
        finally:
            consumer, self._consumer = self._consumer, None
            if consumer is not None:  # on the reader's thread, after its last poll returned
                await self._call(consumer.close)  # no group membership to leave: quick

    async def _run(self) -> None:
        while True:
            if self._target is not None or self._settling():
                await self._settle()
                continue
            if not self.owned:
                await asyncio.sleep(_STEP)
                continue
            events = await self._take()
            if not events or self._target is not None:
                continue  # revoked while the batch filled: it is read again where committed
            self._idle.clear()
            try:
                await self.delivery.handle(events)  # type: ignore[arg-type]
                await self._commit(events)  # a partition revoked meanwhile is not committed
            except Exception as exc:  # noqa: BLE001 - read again from the commits, as on a restart
                logger.error(
                    "conversions: a batch of %d was not made durable (%s); reading again from "
                    "the last committed offsets",
                    len(events),
                    exc,
                )
                if self._target is None:
                    self._target = set(self._numbers)
                await asyncio.sleep(1.0)
            finally:
                self._idle.set()

    # -- assignment --------------------------------------------------------------------------------

    def _settling(self) -> bool:
        """Faust is rebalancing or recovering tables: the ledger is not ready to be read."""
        return bool(getattr(self.app, "rebalancing", False))

    async def _settle(self) -> None:
        """Wait out the rebalance, then read the assigned partitions from their committed offset."""
        while self._settling():
            await asyncio.sleep(_STEP)
        target, self._target = self._target, None
        if target is None:
            return
        try:
            starts = await self._call(self._starts, target)
        except (KafkaException, BrokerError) as exc:
            logger.warning("conversions: cannot read committed offsets, trying again: %s", exc)
            self._target = target if self._target is None else self._target
            await asyncio.sleep(1.0)
            return
        if self._target is not None:
            return  # another rebalance came meanwhile: apply that one
        await self._call(self._assign_from, starts)
        self.owned, self._numbers = {tp.partition for tp in starts}, target
        logger.info(
            "conversions: delivering partitions %s of %s (group %s)",
            ",".join(map(str, sorted(self.owned))) or "-",
            self.topic,
            self.group,
        )

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                self.conn.librdkafka(
                    **{
                        "group.id": self.group,
                        "enable.auto.commit": False,
                        "enable.auto.offset.store": False,
                        "enable.partition.eof": False,
                        "auto.offset.reset": "earliest",
                        "fetch.wait.max.ms": max(1, round(self.fetch_max_wait * 1000)),
                        "queued.max.messages.kbytes": 16384,
                        "on_commit": _on_commit,
                    }
                )
            )
        return self._consumer

    def _starts(self, numbers: set[int]) -> list[TopicPartition]:
        """Each owned partition's start (blocking): committed by the deliver group, else the app's.

        The partitions owned are those whose number Faust assigned for the lead agent's topics,
        modulo their count: a conversions topic created with more partitions is read in full,
        so its extra partitions fail loudly (the ledger's changelog has no such partition)
        instead of never being delivered.
        """
        consumer = self._client()
        metadata = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            msg = f"topic {self.topic} has no partitions yet"
            raise KafkaException(msg)
        partitions = sorted(p for p in metadata.partitions if p % self.partitions in numbers)
        if not partitions:
            return []
        wanted = [TopicPartition(self.topic, p) for p in partitions]
        own = {tp.partition: tp.offset for tp in consumer.committed(wanted, timeout=10)}
        legacy: dict[int, int] = {}
        if any(own.get(p, -1) < 0 for p in partitions):
            legacy = self._app_group_offsets()
        starts: list[TopicPartition] = []
        new: list[TopicPartition] = []
        for p in partitions:
            offset = reading.start_offset(own.get(p), legacy.get(p))
            start = OFFSET_BEGINNING if offset is None else offset
            starts.append(TopicPartition(self.topic, p, start))
            if own.get(p, -1) < 0:
                first = self._first(p) if offset is None else offset
                new.append(TopicPartition(self.topic, p, first))
        if new:  # the start is the group's from now on, whatever the app's group commits later
            consumer.commit(offsets=new, asynchronous=False)
        return starts

    def _first(self, partition: int) -> int:
        low, _high = self._client().get_watermark_offsets(
            TopicPartition(self.topic, partition), timeout=10
        )
        return int(low)

    def _app_group_offsets(self) -> dict[int, int]:
        """Return the app group's committed offsets on the conversions (an older worker's)."""
        admin = AdminClient(self.conn.librdkafka())
        committed = committed_offsets(admin, self.app_id)
        return {tp.partition: tp.offset for tp in committed if tp.topic == self.topic}

    def _assign_from(self, starts: list[TopicPartition]) -> None:
        self._client().assign(starts)

    # -- batches ---------------------------------------------------------------------------------

    async def _take(self) -> list[Event]:
        """Up to ``batch_max`` records, or what came within the linger (and its backlog windows)."""
        batch: list[Event] = []
        if self.linger <= 0:
            while not batch and self._target is None:
                batch += await self._fetch(self.batch_max, _STEP)
            return batch
        deadline = time.monotonic() + self.linger
        held, size_then = 0, 0
        while self._target is None and len(batch) < self.batch_max:
            left = deadline - time.monotonic()
            if left <= 0:
                if not batch or not reading.wait_again(
                    held, size_then, len(batch), self.batch_max, self._backlog
                ):
                    break
                held, size_then = held + 1, len(batch)
                deadline = time.monotonic() + self.linger
                continue
            batch += await self._fetch(self.batch_max - len(batch), min(left, _STEP))
        return batch

    async def _fetch(self, most: int, timeout: float) -> list[Event]:
        return await self._call(self._fetch_blocking, most, timeout)

    def _fetch_blocking(self, most: int, timeout: float) -> list[Event]:
        """Wait up to ``timeout`` for a first record, then take what has already arrived."""
        consumer = self._client()
        first = consumer.poll(timeout)
        if first is None:
            return []
        messages = [first]
        while len(messages) < most:
            more = consumer.consume(most - len(messages), 0)
            if not more:
                break
            messages += more
        events: list[Event] = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                logger.warning("conversions: %s", error)
                continue
            events.append(Event(Message(msg)))
        return events

    def _backlog(self) -> int:
        """Count the records known to wait: on this worker's conversions partitions, upstream."""
        return self._waiting_here() + self.upstream()

    def _waiting_here(self) -> int:
        consumer = self._consumer
        if consumer is None or not self.owned:
            return 0
        try:
            positions = consumer.position([TopicPartition(self.topic, p) for p in self.owned])
        except KafkaException:
            return 0
        return records_waiting(
            lambda tp: consumer.get_watermark_offsets(tp, cached=True)[1],
            {tp: tp.offset - 1 for tp in positions if tp.offset >= 0},
        )

    async def _commit(self, events: Sequence[Event]) -> None:
        """Commit the batch's offsets without waiting for the broker's answer.

        The batch's outcomes, its ``delivered`` ledger writes included, are durable already: a
        commit lost to a crash or a rebalance makes the next owner read those conversions again
        and skip them by the ledger (``duplicate_delivery``), not send them twice. Waiting for
        the answer held the next batch for a round trip (the latency run's p99 rose).
        """
        done = ((e.message.partition, e.message.offset) for e in events)
        offsets = reading.offsets_to_commit(done, self.owned)
        if not offsets:
            return
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        try:
            await self._call(lambda: self._client().commit(offsets=tps, asynchronous=True))
        except KafkaException as exc:  # the next batch's commit covers these offsets too
            logger.warning("conversions: commit failed, the next batch's commit retries: %s", exc)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking consumer call on the reader's own thread (librdkafka calls in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
