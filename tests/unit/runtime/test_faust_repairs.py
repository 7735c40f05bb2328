"""The consumer repairs in :mod:`streams.runtime.faust_repairs`, driven without a broker.

A real :class:`streams.runtime.faust_repairs.Consumer` is built from an app that is never started;
its fetch (``_wait_next_records`` / the consumer thread) and its seeks are replaced by recorders, so
each test sets up the interleaving that lost records in the scale-out drill and checks what is
handed to the streams and where the partition is rewound. Each of these fails on Faust 0.15.3's own
consumer (``faust.transport.drivers.aiokafka.Consumer``)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.types import TP

from streams.runtime.app import App
from streams.runtime.faust_repairs import Consumer

STATUS = "crm.lead-status-changed"
FORM = "leads.form-submitted"
CHANGELOG = "leadstream-leads-changelog"


def record(tp: TopicPartition, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"key", b"value", None, 3, 5, ())


class Recorder:
    """Stands in for aiokafka: the batch a fetch returns, and every seek asked of it."""

    def __init__(self) -> None:
        self.fetched_with: list[set[Any] | None] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.to_beginning: list[TopicPartition] = []
        self.committed: dict[TopicPartition, int | None] = {}
        self.commits_accepted = True

    async def getmany(self, active: set[Any] | None, timeout: float) -> dict[Any, Any]:
        self.fetched_with.append(active)
        return {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def seek_wait(self, partitions: dict[TopicPartition, int]) -> None:
        self.seeks.extend(partitions.items())

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.to_beginning.extend(tps)

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        return dict(self.committed)

    def assignment(self) -> set[TopicPartition]:
        return set(self.committed)

    async def commit(self, offsets: dict[TopicPartition, int]) -> bool:
        return self.commits_accepted


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Consumer, Recorder]]:
    app = App("transport-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    fake = Recorder()
    monkeypatch.setattr(consumer, "_thread", fake)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 1_000)
    monkeypatch.setattr(
        app.topics, "acks_enabled_for", lambda topic: not topic.endswith("-changelog")
    )
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: tp.topic.endswith("-changelog"))
    yield consumer, fake


def batch(consumer: Consumer, records: dict[Any, list[ConsumerRecord]], active: set[Any]) -> None:
    """Make the next fetch return ``records`` for the ``active`` set (Faust's live set)."""

    async def wait_next_records(timeout: float) -> tuple[dict[Any, Any], set[Any]]:
        return records, active

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]


async def drain(consumer: Consumer, during: Any = None) -> list[tuple[str, int, int]]:
    """Offsets ``getmany`` hands out; ``during(n)`` runs after the n-th one."""
    out = []
    async for tp, message in consumer.getmany(timeout=1.0):
        out.append((tp.topic, tp.partition, message.offset))
        if during is not None:
            await during(len(out))
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_fetch_gets_a_copy_of_the_active_set_and_never_an_empty_one(consumer: Any) -> None:
    consumer, fake = consumer
    status0 = TopicPartition(STATUS, 0)
    active = {status0}
    run(consumer._getmany(active, 1.0))
    active.clear()  # a pause while the consumer thread is still fetching
    assert fake.fetched_with == [{status0}]  # what aiokafka holds did not change
    assert fake.fetched_with[0] is not active

    assert run(consumer._getmany(set(), 1.0)) == {}
    assert fake.fetched_with == [{status0}]  # aiokafka would read an empty set as "all"


def test_records_of_a_partition_paused_during_the_fetch_are_rewound_not_skipped(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form0, status0 = TopicPartition(FORM, 0), TopicPartition(STATUS, 0)
    fake.committed = {form0: 10, status0: 5}
    active = {form0}  # status0 was paused (recovery) while its records were fetched
    batch(
        consumer,
        {form0: [record(form0, 10), record(form0, 11)], status0: [record(status0, 5)]},
        active,
    )
    assert run(drain(consumer)) == [(FORM, 0, 10), (FORM, 0, 11)]
    assert fake.seeks == [(status0, 5)]  # read again once resumed, not a gap


def test_a_partition_whose_queue_comes_under_pressure_is_rewound_and_the_others_go_on(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    app = consumer.app
    app.in_recovery = False
    form0, conv0 = TopicPartition(FORM, 0), TopicPartition("leadstream.conversions", 0)
    fake.committed = {form0: 10, conv0: 3}
    consumer._set_active_tps({form0, conv0})
    batch(
        consumer,
        {
            form0: [record(form0, 10), record(form0, 11), record(form0, 12)],
            conv0: [record(conv0, 3), record(conv0, 4), record(conv0, 5)],
        },
        consumer._get_active_partitions(),
    )

    async def form_queue_under_pressure(n: int) -> None:
        if n == 1:  # the conductor put form0's first record: its queue reached the mark
            consumer.on_buffer_full(TP(FORM, 0))

    handed_out = run(drain(consumer, form_queue_under_pressure))
    # Faust would hand out (and, its queue full, wait on) form0's 11 and 12 before conv0's 4.
    assert handed_out == [(FORM, 0, 10), ("leadstream.conversions", 0, 3)] + [
        ("leadstream.conversions", 0, 4),
        ("leadstream.conversions", 0, 5),
    ]
    assert fake.seeks == [(form0, 11)]  # fetched again once its queue drained, not skipped
    consumer.on_buffer_drop(TP(FORM, 0))
    assert TP(FORM, 0) in consumer._get_active_partitions()


def test_a_partition_active_again_is_handed_out_though_faust_still_counts_it_buffered(
    consumer: Any,
) -> None:
    # A rebalance re-activates every assigned partition but leaves Faust's buffered set as it
    # was; holding such a partition would fetch and rewind it over and over.
    consumer, fake = consumer
    consumer.app.in_recovery = False
    form0 = TopicPartition(FORM, 0)
    fake.committed = {form0: 10}
    consumer._set_active_tps({form0})
    consumer.on_buffer_full(TP(FORM, 0))
    consumer._set_active_tps({form0})  # the rebalance's new assignment
    assert TP(FORM, 0) in consumer._buffered_partitions
    batch(consumer, {form0: [record(form0, 10), record(form0, 11)]}, consumer._active_partitions)
    assert run(drain(consumer)) == [(FORM, 0, 10), (FORM, 0, 11)]
    assert fake.seeks == []


def test_records_fetched_before_a_seek_are_not_handed_out_after_it(consumer: Any) -> None:
    consumer, fake = consumer
    form0, status0 = TopicPartition(FORM, 0), TopicPartition(STATUS, 0)
    fake.committed = {form0: 290, status0: 40}
    stale = [record(form0, offset) for offset in range(420, 424)]
    batch(
        consumer,
        {form0: stale, status0: [record(status0, 40), record(status0, 41)]},
        {form0, status0},
    )

    async def seek_to_committed_after_first(n: int) -> None:
        if n == 1:
            await consumer.perform_seek()  # recovery ends: back to the committed offsets

    handed_out = run(drain(consumer, seek_to_committed_after_first))
    assert handed_out == [(FORM, 0, 420)]  # nothing of the old batch after the seek
    assert consumer._read_offset[form0] == 290
    # form0 rewound to the seek's target (not 421: the seek is what counts), status0 to 40
    assert set(fake.seeks) == {(form0, 290), (status0, 40)}


def test_a_stream_partition_without_a_committed_offset_is_sought_to_its_beginning(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form0, form1 = TopicPartition(FORM, 0), TopicPartition(FORM, 1)
    changelog0 = TopicPartition(CHANGELOG, 0)
    fake.committed = {form0: 17, form1: None, changelog0: None}
    run(consumer.perform_seek())
    assert fake.to_beginning == [form1]  # a changelog's position belongs to table recovery
    assert consumer._read_offset[form0] == 17
    assert consumer._read_offset[form1] is None
    assert consumer._committed_offset[form0] == 17


def test_an_acknowledgement_from_an_earlier_generation_is_not_counted(consumer: Any) -> None:
    consumer, _ = consumer
    app = consumer.app
    app.consumer_generation_id = 3
    form0 = TopicPartition(FORM, 0)
    old = consumer._to_message(form0, record(form0, 7))
    old.generation_id = 2  # fetched before the last rebalance, skipped by the stream
    current = consumer._to_message(form0, record(form0, 8))
    assert current.generation_id == 3

    assert consumer.ack(old) is False
    assert old.acked
    assert consumer.ack(current) is True
    assert consumer._acked[form0] == [8]  # 7 is read again from the committed offset


def test_a_drained_buffer_does_not_reactivate_a_paused_partition(consumer: Any) -> None:
    consumer, _ = consumer
    app = consumer.app
    form0, form1 = TP(FORM, 0), TP(FORM, 1)  # as the conductor names them
    consumer._set_active_tps({form0, form1})
    app.in_recovery = False
    consumer.on_buffer_full(form0)
    consumer.on_buffer_full(form1)
    consumer.pause_partitions({form0})  # a rebalance holds form0 until recovery ends
    consumer.on_buffer_drop(form0)
    consumer.on_buffer_drop(form1)
    assert consumer._get_active_partitions() == {form1}
    consumer.resume_partitions({form0})
    assert consumer._get_active_partitions() == {form0, form1}


def test_a_refused_commit_is_logged(consumer: Any, caplog: pytest.LogCaptureFixture) -> None:
    consumer, fake = consumer
    form0 = TopicPartition(FORM, 0)
    assert run(consumer._commit({form0: 12})) is True
    assert "commit refused" not in caplog.text
    fake.commits_accepted = False  # Faust's driver: "already rebalanced", dropped silently
    assert run(consumer._commit({form0: 12})) is False
    assert "commit refused" in caplog.text and f"{FORM}[0]@12" in caplog.text


def test_a_client_only_fetch_reads_every_assigned_partition(consumer: Any) -> None:
    consumer, fake = consumer
    assert run(consumer._getmany(None, 1.0)) == {}
    assert fake.fetched_with == [None]  # no active set: aiokafka reads all, as Faust asks


def test_nothing_is_handed_out_without_records_or_when_stopping(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, fake = consumer
    form0 = TopicPartition(FORM, 0)
    fake.committed = {form0: 3}

    async def no_records(timeout: float) -> tuple[None, set[Any]]:
        return None, {form0}

    consumer._wait_next_records = no_records
    assert run(drain(consumer)) == []
    batch(consumer, {form0: [record(form0, 3)]}, {form0})
    monkeypatch.setattr(type(consumer), "should_stop", property(lambda self: True))
    assert run(drain(consumer)) == []
    assert fake.seeks == []  # a stopping worker leaves the positions alone


def test_a_batch_fetched_while_the_flow_is_stopped_seeks_to_the_committed_offsets(
    consumer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    consumer, fake = consumer
    form0 = TopicPartition(FORM, 0)
    fake.committed = {form0: 30}
    batch(consumer, {form0: [record(form0, 40), record(form0, 41)]}, {form0})
    consumer.stop_flow()
    assert run(drain(consumer)) == []
    assert consumer._read_offset[form0] == 30  # perform_seek ran: read again from committed

    async def failing_seek() -> None:
        msg = "coordinator gone"
        raise RuntimeError(msg)

    consumer.perform_seek = failing_seek
    assert run(drain(consumer)) == []
    assert "exception performing seek when flow not active" in caplog.text
    assert "coordinator gone" in caplog.text


def test_a_rebalance_during_a_batch_stops_handing_out_and_rewinds_nothing(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form0 = TopicPartition(FORM, 0)
    fake.committed = {form0: 10}
    consumer.app.consumer_generation_id = 1
    batch(consumer, {form0: [record(form0, 10), record(form0, 11), record(form0, 12)]}, {form0})

    async def rebalance_after_first(n: int) -> None:
        consumer.app.consumer_generation_id = 2

    assert run(drain(consumer, rebalance_after_first)) == [(FORM, 0, 10)]
    assert fake.seeks == []  # the new assignment sets every position


def test_held_records_are_not_rewound_once_the_flow_stops(consumer: Any) -> None:
    consumer, fake = consumer
    form0, status0 = TopicPartition(FORM, 0), TopicPartition(STATUS, 0)
    fake.committed = {form0: 10, status0: 5}
    batch(consumer, {status0: [record(status0, 5)], form0: [record(form0, 10)]}, {form0})

    async def stop_flow(n: int) -> None:
        consumer.stop_flow()  # a rebalance starts: it sets every position again

    assert run(drain(consumer, stop_flow)) == [(FORM, 0, 10)]
    assert fake.seeks == []


def test_a_seek_during_a_batch_rewinds_to_its_target(consumer: Any) -> None:
    consumer, fake = consumer
    form0, form1 = TopicPartition(FORM, 0), TopicPartition(FORM, 1)
    fake.committed = {form0: 100, form1: 200}
    batch(
        consumer,
        {form0: [record(form0, o) for o in (100, 101, 102)], form1: [record(form1, 200)]},
        {form0, form1},
    )

    async def seek_after_first(n: int) -> None:
        if n == 1:
            await consumer.seek(form0, 50)

    handed_out = run(drain(consumer, seek_after_first))
    assert (FORM, 0, 101) not in handed_out and (FORM, 0, 102) not in handed_out
    assert (FORM, 1, 200) in handed_out
    assert fake.seeks == [(form0, 50), (form0, 50)]  # the seek, then the rewind to its target


def test_a_seek_wait_during_a_batch_rewinds_to_the_first_record_not_handed_out(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form0 = TopicPartition(FORM, 0)
    fake.committed = {form0: 100}
    batch(consumer, {form0: [record(form0, o) for o in (100, 101, 102)]}, {form0})

    async def seek_wait_after_first(n: int) -> None:
        if n == 1:
            await consumer.seek_wait({form0: 500})

    assert run(drain(consumer, seek_wait_after_first)) == [(FORM, 0, 100)]
    assert fake.seeks == [(form0, 500), (form0, 101)]  # 101 was fetched but never handed out


def test_records_of_a_partition_no_longer_assigned_are_not_rewound(consumer: Any) -> None:
    consumer, fake = consumer
    form0, status0 = TopicPartition(FORM, 0), TopicPartition(STATUS, 0)
    fake.committed = {form0: 10}  # status0 was revoked while its records were fetched
    batch(consumer, {form0: [record(form0, 10)], status0: [record(status0, 5)]}, {form0})
    assert run(drain(consumer)) == [(FORM, 0, 10)]
    assert fake.seeks == []  # seeking a partition this member lost would fail


def test_a_drop_for_a_partition_not_buffered_changes_nothing(consumer: Any) -> None:
    consumer, _ = consumer
    form0, form1 = TP(FORM, 0), TP(FORM, 1)
    consumer._set_active_tps({form0})
    consumer.on_buffer_drop(form1)  # never full: Faust did not take it out of the fetch
    assert consumer._get_active_partitions() == {form0}


def test_the_worker_consumer_fetches_with_the_apps_fetch_wait_not_fausts_1500_ms() -> None:
    from streams.runtime.app import create_app
    from streams.settings import Settings

    async def worker_consumer(wait: float) -> Any:
        app = create_app(Settings(kafka_fetch_max_wait=wait))
        assert app.fetch_max_wait == wait
        thread = app.consumer._new_consumer_thread()
        return thread._create_worker_consumer(app.transport)

    assert run(worker_consumer(0.1))._fetch_max_wait_ms == 100
    assert run(worker_consumer(0.025))._fetch_max_wait_ms == 25


def test_resumed_stream_records_wait_for_the_seek_to_the_committed_offsets(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form1, changelog1 = TopicPartition(FORM, 1), TopicPartition(CHANGELOG, 1)
    fake.committed = {form1: 248, changelog1: None}
    # Faust's _resume_streams after recovery: resume the stream partitions, then perform_seek,
    # whose fetch of the committed offsets takes a round trip; a fetch completes meanwhile.
    consumer.resume_partitions({form1})
    batch(consumer, {form1: [record(form1, o) for o in range(248, 252)]}, {form1})
    assert run(drain(consumer)) == []  # handed out now, their offsets overwrote the seek's
    assert fake.seeks == []  # the seek due sets the position
    run(consumer.perform_seek())
    assert fake.seeks == [(form1, 248)]  # what was fetched meanwhile is read again
    assert consumer._read_offset[form1] == 248
    run(consumer._getmany({form1}, 1.0))  # the next fetch, after the seek: handed out
    assert run(drain(consumer)) == [(FORM, 1, o) for o in range(248, 252)]


def test_records_fetched_while_the_seek_is_under_way_are_rewound_to_its_target(
    consumer: Any,
) -> None:
    consumer, fake = consumer
    form2 = TopicPartition(FORM, 2)  # a partition taken over from a killed worker
    fake.committed = {form2: 106}
    gate = asyncio.Event()

    async def slow_committed() -> dict[TopicPartition, int | None]:
        await gate.wait()  # the round trip to the group coordinator
        return dict(fake.committed)

    fake.seek_to_committed = slow_committed  # type: ignore[method-assign]

    async def scenario() -> list[tuple[str, int, int]]:
        consumer.resume_partitions({form2})
        seeking = asyncio.create_task(consumer.perform_seek())
        await asyncio.sleep(0)
        # fetched after aiokafka's seek, before perform_seek returned
        batch(consumer, {form2: [record(form2, o) for o in range(106, 110)]}, {form2})
        handed_out = await drain(consumer)
        gate.set()
        await seeking
        return handed_out

    assert run(scenario()) == []
    assert fake.seeks == [(form2, 106)]  # not left at 110: 106..109 are not skipped
    assert consumer._committed_offset[form2] == 106


def on_own_loop(c: Consumer, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` on the consumer's loop, which its tasks and events belong to."""
    return c.loop.run_until_complete(asyncio.wait_for(main(), timeout=5))


def test_a_callback_that_does_not_suspend_is_done_without_a_task(consumer: Any) -> None:
    c, _ = consumer

    async def callback() -> str:
        return "handed over"

    async def main() -> Any:
        flow = asyncio.Event().wait()
        before = len(asyncio.all_tasks())
        results = await c.wait_first(callback(), flow)
        return results, len(asyncio.all_tasks()) - before, inspect.getcoroutinestate(flow)

    results, new_tasks, flow_state = on_own_loop(c, main)
    assert results.results == ["handed over"]
    assert results.stopped is False
    assert new_tasks == 0
    assert flow_state == inspect.CORO_CLOSED  # closed, not left "never awaited"


def test_a_callback_that_suspends_goes_on_where_it_stopped(consumer: Any) -> None:
    c, _ = consumer
    steps: list[str] = []

    async def callback(room: asyncio.Future[str]) -> str:
        steps.append("first step")
        steps.append(await room)  # a full stream buffer: waits for room
        await asyncio.sleep(0)
        return "handed over"

    async def main() -> Any:
        room: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, room.set_result, "room")
        return await c.wait_first(callback(room), asyncio.Event().wait())

    results = on_own_loop(c, main)
    assert results.results == ["handed over"]
    assert steps == ["first step", "room"]  # the first step ran once, not again


def test_a_flow_suspension_still_cancels_a_suspended_callback(consumer: Any) -> None:
    c, _ = consumer
    cancelled: list[bool] = []

    async def callback(never: asyncio.Future[None]) -> None:
        try:
            await never
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        flow = asyncio.Event()
        loop.call_later(0.01, flow.set)
        return await c.wait_first(callback(loop.create_future()), flow.wait())

    results = on_own_loop(c, main)
    assert results.results == [True]  # the flow's wait won
    assert cancelled == [True]


def test_a_callback_that_fails_at_once_raises_and_closes_the_other_waits(consumer: Any) -> None:
    c, _ = consumer

    async def callback() -> None:
        msg = "bad record"
        raise ValueError(msg)

    async def main() -> str:
        flow = asyncio.Event().wait()
        with pytest.raises(ValueError, match="bad record"):
            await c.wait_first(callback(), flow)
        return inspect.getcoroutinestate(flow)

    assert on_own_loop(c, main) == inspect.CORO_CLOSED


def test_the_agents_input_queues_hold_what_the_setting_says() -> None:
    # A full queue holds every agent's records (Faust's drain loop awaits the full channel),
    # so on a backlog the deliver agent waits behind the inputs (README "Latency levers").
    from streams.runtime.app import create_app
    from streams.settings import Settings

    assert create_app(Settings()).conf.stream_buffer_maxsize == 4096
    assert create_app(Settings(agent_buffer_max=32768)).conf.stream_buffer_maxsize == 32768
    assert create_app(Settings(agent_buffer_max=500)).conf.stream_buffer_maxsize == 500


def test_records_waiting_counts_the_upstream_partitions_read_so_far(consumer: Any) -> None:
    # The deliver agent's hint (runtime/agents.py): on a backlog of the lead agent's inputs its
    # first batch waits for them instead of leaving with one linger's output.
    c, _ = consumer  # every highwater is 1,000
    conversions = TP("leadstream.conversions", 0)
    c._read_offset[TP(STATUS, 0)] = 499  # 500 more status changes on partition 0
    c._read_offset[TP(STATUS, 1)] = None  # not read yet: unknown, counts nothing
    c._read_offset[TP(FORM, 0)] = 899  # 100 forms
    c._read_offset[TP(CHANGELOG, 0)] = 0  # not upstream
    c._read_offset[conversions] = 0  # the batch's own last offset below wins

    assert c.records_waiting({conversions: 989}, upstream={STATUS, FORM}) == 10 + 500 + 100
    assert c.records_waiting({conversions: 989}, upstream=set()) == 10
    assert c.records_waiting({}, upstream={STATUS}) == 500
