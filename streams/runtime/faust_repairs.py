"""Faust's aiokafka transport, with the consumer repairs Leadstream needs to lose nothing.

:class:`Consumer` differs from Faust 0.15.3's aiokafka consumer in these ways:

* **Recovery can read to the confirmed end of each changelog.** Faust stops restoring a table at
  each changelog partition's listed end (``highwaters``); with
  ``LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS`` the override confirms those ends with a fetch
  (:mod:`streams.runtime.offsets`), so a broker whose ListOffsets answer is short (Tansu) cannot
  make a restarted worker forget state. Kafka's answer is exact, so it is off by default.
* **A fetch never takes records of a paused partition.** Faust hands aiokafka its *live* set of
  active partitions, which the consumer thread reads while the worker pauses and resumes
  partitions around a rebalance, and aiokafka reads an empty set as "every partition". Records
  of partitions paused for table recovery were fetched, dropped by Faust (the partition was not
  active) and the position moved past them; Faust later took the jump for a gap in the log,
  acknowledged offsets it had never processed and committed past them: leads lost after a
  takeover in the scale-out drill. Here the fetch uses a copy of the set and fetches nothing
  when it is empty, and a partition whose fetched records cannot be handed to the streams is
  rewound to the first of them.
* **Records fetched before a seek are not handed out after it.** Faust's fetch loop went on
  through a batch fetched before ``perform_seek`` moved a partition, and took the jump from the
  new read offset to the next stale record for a gap, acknowledging records still in flight.
  Here a partition sought during a batch gets no more records from that batch; it is rewound to
  the earlier of the seek's target and its first record not handed out. A partition with no
  committed offset is sought to its beginning (the ``earliest`` reset policy), as a new member
  would read it.
* **Stream records wait for the seek that ends a rebalance.** After table recovery Faust resumes
  the stream partitions and only then awaits ``perform_seek``, whose fetch of the committed
  offsets is a round trip to the group coordinator. Records fetched in between were handed to
  the streams; when one finished after the seek, Faust's fetch loop wrote its offset over the
  read offset the seek had set, and the records read again from the committed offset were
  dropped as already read: never processed, never acknowledged, so the partition's commit
  stalled below them (the scale-out drill's liveness restarts on Apache Kafka). Here a resumed
  stream partition hands out nothing until ``perform_seek`` has set its offsets, and what was
  fetched meanwhile is rewound to the seek's target.
* **A refused commit is logged.** Faust's aiokafka driver drops a commit the group coordinator
  refuses ("already rebalanced") without a word; a worker whose commits keep failing then re-reads
  everything after a restart. It is a WARNING here (the liveness probe catches the case where the
  committed offset never moves).
* **The fetch wait is a setting.** Faust creates the worker's aiokafka consumer with
  ``fetch_max_wait_ms=1500``: a fetch in flight for some partitions holds the next fetch of a
  partition just drained until a record arrives or the wait runs out, so a hop could add up to
  1.5 s. :class:`ConsumerThread` uses the app's ``fetch_max_wait``
  (``LEADSTREAM_KAFKA_FETCH_MAX_WAIT``).
* **A record handed to its streams without waiting costs no task.** Faust's fetch loop hands
  each record over with ``wait_first(callback, suspend_flow.wait())``, which starts four tasks
  and an ``asyncio.wait`` per record (about 40 % of a worker's CPU at saturation). Here the
  callback is stepped once first: when it finishes without suspending (its stream buffers have
  room and the flow is on: nearly always), ``wait_first`` returns at once; otherwise the started
  callback goes on in the tasks ``wait_first`` starts, exactly as before.
* **A batch's successor fills while the batch is worked on.** Faust's ``take_events`` stops
  filling its buffer until the caller is done with the batch it handed out, so the worker idled
  through each batch's producer flushes (two broker round trips, 15 % of the lead stage at
  saturation). :class:`Stream` hands out the batch and fills the emptied buffer at once; a
  batch's events are still acknowledged only when the caller is done with it, and the buffer
  still holds at most ``max_`` events.
* **A full stream queue holds only its own partitions.** Faust hands every record of a fetch
  to its stream's queue and, when a queue is full, awaits it: a fetch holds up to 1 MiB per
  partition, so a backlog of form submits held the conversions fetched behind them (the deliver
  agent got nothing for seconds at a time and started 6–11 s late on a backlog). Faust already
  stops fetching a partition whose queue is under pressure (``on_buffer_full`` takes it out of
  the active set); here the rest of that partition's fetched records is not handed out either
  but rewound, as for a paused partition, and fetched again once its queue drained, so the other
  partitions' records go on. Faust's "buffered" set alone does not hold a partition: a
  rebalance re-activates every partition and leaves that set as it was.
* **Acknowledgements from an earlier generation are not counted.** Faust's streams acknowledge
  an event they skip because it was fetched before the last rebalance; its offset was then
  committable though the event was never processed. Such an acknowledgement is now ignored: the
  record is read again from the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Generator,
    Mapping,
)
from typing import Any, TypeVar

import faust
from faust import streams as faust_streams
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT, Message
from faust.types.tuples import ack_lock
from mode.services import WaitArgT, WaitResults

from streams.domain import reading
from streams.runtime import offsets

logger = logging.getLogger(__name__)


class Consumer(faust_aiokafka.Consumer):
    """The aiokafka consumer; see the module docstring for what differs from Faust's."""

    #: Number of seeks so far, and for each partition sought: (that number, target offset).
    _seeks: int = 0
    _sought: dict[TP, tuple[int, int]]
    #: ``_seeks`` when the last fetch started: records of a partition sought since are suspect.
    _seeks_at_fetch: int = 0
    #: Stream partitions resumed and not yet sought to their committed offsets.
    _unsought: set[TP]
    #: Of those, the first offset fetched but not handed out, for the seek to rewind to.
    _held_unsought: dict[TP, int]

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def on_init(self) -> None:
        """Start with no seeks recorded (and again when Faust restarts the consumer)."""
        super().on_init()
        self._seeks = self._seeks_at_fetch = 0
        self._sought = {}
        self._unsought = set()
        self._held_unsought = {}

    def records_waiting(self, last_offsets: Mapping[TP, int], upstream: Collection[str]) -> int:
        """How many records this consumer knows to wait after ``last_offsets``, and upstream.

        Upstream are this consumer's partitions of the ``upstream`` topics, counted after the
        last record handed to their stream (Faust's ``_read_offset``: a partition not read yet,
        or revoked, counts nothing; a seek sets it to the committed offset, one record early).
        A hint for :meth:`Stream.take_events`, not a count.
        """
        read = {
            tp: offset
            for tp, offset in self._read_offset.items()
            if offset is not None and tp.topic in upstream
        }
        return records_waiting(self.highwater, {**read, **last_offsets})

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """Return the end offset of each partition as listed, confirmed by a fetch if asked.

        The app's ``kafka_connection`` and ``confirm_end_offsets``
        (:class:`streams.runtime.app.App`) say whether and how to confirm.
        """
        listed = await super().highwaters(*partitions)
        conn = getattr(self.app, "kafka_connection", None)
        if conn is None or not getattr(self.app, "confirm_end_offsets", False):
            return listed
        confirmed = await asyncio.to_thread(offsets.fetched_end_offsets, conn, listed)
        raised = [
            f"{tp.topic}[{tp.partition}] {listed[tp]} -> {end}"
            for tp, end in sorted(confirmed.items())
            if end != listed[tp]
        ]
        if raised:
            logger.info(
                "recovery reads past the broker's listed end offsets: %s", ", ".join(raised)
            )
        return confirmed  # type: ignore[return-value]  # None stays None, as Faust expects

    # -- fetching ------------------------------------------------------------------------------

    async def wait_first(self, *coros: WaitArgT, timeout: Any = None) -> WaitResults:
        """Return at once when the first coroutine finishes without suspending (module doc)."""
        first = coros[0] if coros else None
        if not asyncio.iscoroutine(first) or self._stopped.is_set() or self._crashed.is_set():
            return await super().wait_first(*coros, timeout=timeout)
        try:
            yielded = first.send(None)
        except StopIteration as done:
            _close(coros[1:])
            return WaitResults([first], [done.value], False)
        except BaseException:
            _close(coros[1:])
            raise
        resumed = _Resumed(first, yielded)
        return await super().wait_first(resumed, *coros[1:], timeout=timeout)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """Fetch from a copy of the active partitions, and nothing when none is active."""
        self._seeks_at_fetch = self._seeks
        if active_partitions is None:  # a client-only app reads every assigned partition
            return await super()._getmany(None, timeout)
        fetching = set(active_partitions)
        return await super()._getmany(fetching, timeout) if fetching else {}

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Yield fetched records as Faust's ``getmany`` does, rewinding what it cannot hand out.

        Round-robin across partitions, while the flow is on and the generation unchanged.
        """
        records, active_partitions = await self._wait_next_records(timeout)
        seeks_before = self._seeks_at_fetch
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:  # as Faust does; the rebalance that stopped the flow sets the positions again
                await self.perform_seek()
            except Exception as exc:
                logger.warning("exception performing seek when flow not active: %r", exc)
            return
        held: dict[TP, int] = {}  # partition -> first offset not handed out
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return  # a rebalance: the new assignment sets every position again
            if tp in held:
                continue
            if tp in self._unsought:
                held[tp] = record.offset  # resumed, but its seek to the committed offset is due
            elif self._seek_target_since(tp, seeks_before) is not None:
                held[tp] = record.offset  # fetched before the seek, or mixed with such records
            elif active_partitions is None or tp in active_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, self._to_message(tp, record)
            else:  # paused, or its stream's queue came under pressure, since the fetch
                held[tp] = record.offset
        if held and self.flow_active and self.app.consumer_generation_id == generation_id:
            await self._rewind(held, seeks_before)

    async def _rewind(self, held: Mapping[TP, int], seeks_before: int) -> None:
        assigned = self.assignment()
        for tp, offset in held.items():
            if tp in self._unsought:  # the seek due rewinds it (it may be under way right now)
                self._held_unsought[tp] = min(offset, self._held_unsought.get(tp, offset))
                continue
            target = self._seek_target_since(tp, seeks_before)
            if target is not None:
                offset = min(offset, target)
            if tp in assigned:
                logger.debug("rewinding %s to %s: records fetched but not handed out", tp, offset)
                await self._seek(tp, offset)

    # -- seeking -------------------------------------------------------------------------------

    def _seek_target_since(self, tp: TP, seeks: int) -> int | None:
        """Return the target of the last seek of ``tp`` if it came after seek number ``seeks``."""
        sought = self._sought.get(tp)
        return sought[1] if sought is not None and sought[0] > seeks else None

    def _mark_sought(self, targets: Mapping[TP, int]) -> None:
        self._seeks += 1
        for tp, offset in targets.items():
            self._sought[tp] = (self._seeks, offset)

    async def seek(self, partition: TP, offset: int) -> None:
        """Faust's ``seek``; records fetched before it are not handed out after it."""
        await super().seek(partition, offset)
        self._mark_sought({partition: offset})

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        """Faust's ``seek_wait``; records fetched before it are not handed out after it."""
        await super().seek_wait(partitions)
        self._mark_sought(partitions)

    def resume_partitions(self, tps: Any) -> None:
        """Faust's ``resume_partitions``; resumed stream partitions wait for the seek.

        Faust resumes the stream partitions and only then awaits ``perform_seek``, whose fetch
        of the committed offsets takes a round trip: records fetched in between were handed to
        the streams at whatever the position was, and their offsets overwrote the read offset
        the seek had just set, so the records read again after the seek were dropped unprocessed.
        """
        tpset = set(tps)
        super().resume_partitions(tpset)
        self._unsought.update(tp for tp in tpset if not self._is_changelog_tp(tp))

    async def perform_seek(self) -> None:
        """Seek each partition to its committed offset, a stream partition without one to its start.

        Records fetched before the seek are not handed out after it.
        """
        committed = await self.seek_to_committed()  # aiokafka seeks those with an offset > 0
        fresh = [
            tp
            for tp, offset in committed.items()
            if not offset
            and not self._is_changelog_tp(tp)
            and self.app.topics.acks_enabled_for(tp.topic)
        ]
        if fresh:
            await self._thread.seek_to_beginning(*fresh)  # type: ignore[attr-defined]
        # From here to the end without a suspension point, so that the fetch loop sees the new
        # read offsets and the seek marks together.
        targets = {tp: offset for tp, offset in committed.items() if offset} | dict.fromkeys(
            fresh, 0
        )
        self._mark_sought(targets)
        self._unsought.clear()
        held, self._held_unsought = self._held_unsought, {}
        thread: Any = self._thread  # its seek is synchronous: no suspension before the end
        for tp, offset in held.items():  # fetched during the seek: rewound, never skipped
            if tp in committed:
                thread.seek(tp, min(offset, targets.get(tp, offset)))
        self._read_offset.update(
            {
                tp: offset if offset is not None and offset >= 0 else None
                for tp, offset in committed.items()
            }
        )
        self._committed_offset.update(
            {tp: offset or None for tp, offset in committed.items() if offset is not None}
        )

    # -- commits, flow and acknowledgements ----------------------------------------------------

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit; say so when the group coordinator refused it (Faust drops that silently)."""
        committed = await super()._commit(offsets)
        if not committed and offsets and not self.should_stop:
            logger.warning(
                "offset commit refused (the group is rebalancing or this member's generation is "
                "stale): after a restart or a rebalance these partitions are read again from their "
                "last committed offset, not from %s",
                ", ".join(
                    f"{tp.topic}[{tp.partition}]@{off}" for tp, off in sorted(offsets.items())
                ),
            )
        return committed

    def on_buffer_drop(self, tp: TP) -> None:
        """Fetch again from a partition whose stream buffer drained, unless it is paused.

        Faust re-activated it even while a rebalance held it paused for table recovery.
        """
        buffered = self._buffered_partitions
        if tp in buffered:
            buffered.discard(tp)
            if tp not in self._paused_partitions:
                self._get_active_partitions().add(tp)

    def ack(self, message: Message) -> bool:
        """Count the acknowledgement only for a record fetched in the current generation."""
        generation_id = message.generation_id
        if generation_id is not None and generation_id != self.app.consumer_generation_id:
            with ack_lock:
                message.acked = True
                self._unacked_messages.discard(message)
            return False
        return super().ack(message)


def _close(coros: tuple[WaitArgT, ...]) -> None:
    """Close coroutines that will not run (no "never awaited" warning)."""
    for coro in coros:
        if asyncio.iscoroutine(coro):
            coro.close()


class _Resumed:
    """A coroutine already stepped once, awaitable from where it suspended.

    Its first step's yield (the future it waits on, or None) is yielded again to the task that
    awaits this, which then drives the coroutine on as if it had started it.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._yielded
        while True:
            try:
                try:
                    sent = yield value
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:  # noqa: BLE001 - thrown in by the task: pass it on
                    value = coro.throw(exc)
                else:
                    value = coro.send(sent)
            except StopIteration as done:
                return done.value


_P = TypeVar("_P")  # a partition: Faust's TP, or confluent-kafka's TopicPartition


def records_waiting(highwater: Callable[[_P], int | None], last_offsets: Mapping[_P, int]) -> int:
    """How many records the partitions hold after each one's ``last_offsets`` entry.

    ``highwater`` is the consumer's last known end of a partition (aiokafka's, from its fetches;
    librdkafka's cached watermark for the conversions reader, whose partitions are
    ``TopicPartition`` values).
    A partition it cannot tell (no longer assigned, or the consumer not started) counts 0: the
    figure is only a hint for :meth:`Stream.take_events`.
    """
    waiting = 0
    for tp, offset in last_offsets.items():
        try:
            end = highwater(tp)
        except Exception:  # noqa: BLE001, S112 - aiokafka asserts the partition is assigned
            continue
        if end is not None and end > offset + 1:
            waiting += end - offset - 1
    return waiting


class Stream(faust.Stream):
    """Faust's stream; :meth:`take_events` fills the next batch while the caller has this one."""

    @faust_streams._tracks_buffer_agen  # noqa: SLF001 - Stream.on_stop closes what it tracks
    async def take_events(  # type: ignore[override]
        self,
        max_: int,
        within: float,
        *,
        acks: bool = True,
        backlog: Callable[[Mapping[TP, int]], int] | None = None,
    ) -> AsyncGenerator[list[EventT], None]:
        """Yield up to ``max_`` events at a time, or what came within ``within`` seconds.

        Faust's own version, but the buffer is emptied when a batch is handed out, not after the
        caller is done with it: the events that arrive during the batch's awaits (its producer
        flushes) are buffered for the next one instead of waiting. Each batch's events are
        acknowledged after the caller is done with that batch, and the buffer never holds more
        than ``max_`` events: a full buffer holds the stream until the next batch is taken.

        ``within`` 0 has no window: the caller gets what is buffered as soon as it asks, and an
        idle stream waits for its first event (Faust's loop would poll an empty buffer without
        pause and burn a core while idle).

        ``acks`` False leaves the acknowledging to the caller (``await stream.ack(event)``), who
        may then finish a batch after taking the next one (the lead agent's Finisher).

        ``backlog``, given the offset of the last event taken from each partition, says how many
        more records are already waiting that may join the batch: on those partitions, and on
        the ones upstream that feed them. When the window ends with a part-full batch and the
        backlog would fill it, the batch waits one more window for them, and again while it grew
        in the last one, ``BACKLOG_WINDOWS`` more at most (``streams.domain.reading.wait_again``):
        a worker that is behind sends full batches (Meta's deliver agent: fewer, fuller requests),
        also while its lead agent starts. TikTok's conversions reader applies the same rule.
        """
        buffer: list[EventT] = []
        last_offsets: dict[TP, int] = {}
        full = asyncio.Event()
        room = asyncio.Event()
        room.set()
        arrived = asyncio.Event()  # the buffer is not empty

        async def add_to_buffer(value: Any) -> Any:
            try:
                if len(buffer) >= max_:  # strict: never more than max_ events buffered
                    room.clear()
                    await self.wait(room)  # type: ignore[arg-type]
                event = self.current_event
                if event is None:
                    msg = "take buffer found current_event is None"
                    raise RuntimeError(msg)
                buffer.append(event)
                if backlog is not None:
                    message = event.message
                    last_offsets[message.tp] = message.offset
                arrived.set()
                if len(buffer) >= max_:
                    full.set()
            except asyncio.CancelledError:  # pragma: no cover
                raise
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        enable_acks = self.enable_acks
        self.enable_acks = False  # this generator acknowledges, once the caller is done
        self.add_processor(add_to_buffer)
        self._enable_passive(self.channel.__aiter__())  # type: ignore[arg-type]
        try:
            while not self.should_stop:
                if within > 0:
                    await self.wait_for_stopped(full, timeout=within)  # type: ignore[arg-type]
                    held, size = 0, 0
                    while (
                        backlog is not None
                        and not self.should_stop
                        and reading.wait_again(
                            held, size, len(buffer), max_, lambda: backlog(last_offsets)
                        )
                    ):
                        held, size = held + 1, len(buffer)
                        await self.wait_for_stopped(full, timeout=within)  # type: ignore[arg-type]
                elif not buffer:
                    await self.wait_for_stopped(arrived)  # type: ignore[arg-type]
                if not buffer:
                    continue
                batch = buffer[:]
                buffer.clear()
                full.clear()
                arrived.clear()
                room.set()
                if not acks:
                    yield batch
                    continue
                try:
                    yield batch
                finally:
                    for event in batch:
                        await self.ack(event)
        finally:
            self.enable_acks = enable_acks
            self._processors.remove(add_to_buffer)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread; the worker consumer's fetch wait is the app's."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait", None)
        if wait is not None:  # read by the consumer's fetcher, which start() creates
            consumer._fetch_max_wait_ms = round(wait * 1000)
        return consumer


class Transport(faust_aiokafka.Transport):
    """Faust's ``kafka://`` (aiokafka) transport with :class:`Consumer`."""

    Consumer = Consumer
