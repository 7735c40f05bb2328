""":class:`streams.runtime.faust_repairs.Stream`'s ``take_events``, on an in-memory channel.

No broker: a Faust stream over ``app.channel()`` of an app that is never started (its flow
control resumed by hand), with the stream's acknowledgements recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from streams.runtime.app import App
from streams.runtime.faust_repairs import Stream


def _open(stream_class: type[faust.Stream]) -> tuple[Any, Any, list[int]]:
    """A stream over an in-memory channel; returns (channel, stream, values acknowledged)."""
    app = App("take-events-test", broker="kafka://127.0.0.1:1", Stream=stream_class)
    app.finalize()
    app.flow_control.resume()
    channel = app.channel(maxsize=100)
    stream = app.stream(channel)
    acked: list[int] = []

    async def ack(event: Any) -> bool:
        acked.append(event.value)
        return True

    stream.ack = ack
    return channel, stream, acked


async def _take(
    stream_class: type[faust.Stream], sent: int, max_: int, within: float = 0.05
) -> list[dict[str, Any]]:
    """Take batches of ``sent`` values; note per batch what was acknowledged and buffered."""
    channel, stream, acked = _open(stream_class)
    for value in range(sent):
        await channel.send(value=value)
    seen: list[dict[str, Any]] = []
    async for batch in stream.take_events(max_, within=within):
        note: dict[str, Any] = {"batch": [e.value for e in batch], "acked": list(acked)}
        await asyncio.sleep(0.01)  # a flush: the stream may run meanwhile
        note["acked_after_await"] = list(acked)
        note["stream_at"] = stream.current_event.value if stream.current_event else None
        seen.append(note)
        if sum(len(n["batch"]) for n in seen) == sent:
            break
    await stream.stop()
    return seen


@pytest.mark.parametrize("within", [0.05, 0.0])
def test_batches_hold_at_most_max_and_are_acknowledged_after_the_caller(within: float) -> None:
    seen = asyncio.run(asyncio.wait_for(_take(Stream, 5, 2, within), 10))
    assert [n["batch"] for n in seen] == [[0, 1], [2, 3], [4]]
    # A batch's events are acknowledged only once the caller is done with it, in order.
    assert [n["acked"] for n in seen] == [[], [0, 1], [0, 1, 2, 3]]
    assert [n["acked_after_await"] for n in seen] == [[], [0, 1], [0, 1, 2, 3]]


def test_the_next_batch_fills_while_the_caller_awaits() -> None:
    seen = asyncio.run(asyncio.wait_for(_take(Stream, 5, 2), 10))
    # While the caller held [0, 1], the stream buffered 2 and 3 (the most the buffer holds) and
    # went on to 4, which waits for room. Faust's own take_events stops at 2 until the caller
    # is done with the batch.
    assert seen[0]["stream_at"] == 4


async def _idle_waits(within: float, idle: float) -> tuple[list[int], int]:
    """Take from a stream that gets one event after ``idle`` seconds; count the waits meanwhile."""
    channel, stream, _ = _open(Stream)
    waits = 0
    wait_for_stopped = stream.wait_for_stopped

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal waits
        waits += 1
        return await wait_for_stopped(*args, **kwargs)

    stream.wait_for_stopped = counted

    async def later() -> None:
        await asyncio.sleep(idle)
        await channel.send(value=7)

    sender = asyncio.create_task(later())
    async for batch in stream.take_events(10, within=within):
        taken = [e.value for e in batch]
        break
    await sender
    await stream.stop()
    return taken, waits


def test_no_window_waits_for_the_first_event_instead_of_polling() -> None:
    # within=0 (LEADSTREAM_AGENT_BATCH_WITHIN / LEADSTREAM_DELIVERY_LINGER 0): an idle stream
    # waits once for its first event. Faust's loop re-polled its empty buffer without pause, a
    # core burnt while idle (thousands of waits in these 0.3 s).
    taken, waits = asyncio.run(asyncio.wait_for(_idle_waits(0.0, 0.3), 10))
    assert taken == [7]
    assert waits <= 2


async def _take_unacked(sent: int) -> tuple[list[list[int]], list[int]]:
    channel, stream, acked = _open(Stream)
    for value in range(sent):
        await channel.send(value=value)
    batches: list[list[int]] = []
    async for batch in stream.take_events(2, within=0.0, acks=False):
        batches.append([e.value for e in batch])
        if sum(map(len, batches)) == sent:
            break
    await stream.stop()
    return batches, acked


def test_acks_false_leaves_the_acknowledging_to_the_caller() -> None:
    # The lead agent acknowledges a batch once its Finisher made it durable,
    # which may be after it took the next batch.
    batches, acked = asyncio.run(asyncio.wait_for(_take_unacked(3), 10))
    assert batches == [[0, 1], [2]]
    assert acked == []


async def _take_first_with_backlog(
    first: int, later: int | list[int], waiting: int, within: float = 0.1
) -> tuple[list[int], list[dict[Any, int]], float]:
    """Send ``first`` values, then ``later`` more in each window after the first; take a batch of 5.

    ``later`` is a count for the second window, or a list: one count per window from the
    second on. ``backlog`` always answers ``waiting``; returns the batch, what backlog was
    asked with, and the seconds the batch took.
    """
    channel, stream, _ = _open(Stream)
    for value in range(first):
        await channel.send(value=value)
    asked: list[dict[Any, int]] = []
    counts = later if isinstance(later, list) else [later]

    def backlog(last_offsets: Any) -> int:
        asked.append(dict(last_offsets))
        return waiting

    async def send_later() -> None:
        value = first
        await asyncio.sleep(within * 0.5)
        for count in counts:
            await asyncio.sleep(within)  # within the next window
            for _ in range(count):
                await channel.send(value=value)
                value += 1

    sender = asyncio.create_task(send_later())
    loop = asyncio.get_running_loop()
    started = loop.time()
    async for batch in stream.take_events(5, within=within, backlog=backlog):
        taken = [e.value for e in batch]
        break
    took = loop.time() - started
    sender.cancel()
    await stream.stop()
    return taken, asked, took


def test_a_part_full_batch_waits_one_more_window_for_a_backlog_that_fills_it() -> None:
    taken, asked, _ = asyncio.run(asyncio.wait_for(_take_first_with_backlog(3, 2, 2), 10))
    assert taken == [0, 1, 2, 3, 4]
    # Asked with the last offset taken from each partition (an in-memory channel's: -1).
    assert len(asked) == 1
    assert list(asked[0].values()) == [-1]


def test_a_backlog_too_small_to_fill_the_batch_does_not_hold_it() -> None:
    taken, asked, _ = asyncio.run(asyncio.wait_for(_take_first_with_backlog(3, 2, 1), 10))
    assert taken == [0, 1, 2]
    assert len(asked) == 1


def test_a_batch_that_stopped_growing_no_longer_waits_for_its_backlog() -> None:
    # The consumer's end offsets promise records that do not come (a partition paused meanwhile,
    # or inputs that make no conversion): the batch goes out after the second window, as it is.
    taken, asked, took = asyncio.run(asyncio.wait_for(_take_first_with_backlog(3, 0, 100), 10))
    assert taken == [0, 1, 2]
    assert len(asked) == 1
    assert 0.2 <= took < 0.6


def test_a_growing_batch_waits_while_it_grows() -> None:
    # A lead agent that starts slowly: one more event in the second window, none in the third.
    taken, asked, took = asyncio.run(
        asyncio.wait_for(_take_first_with_backlog(1, [1, 0, 1], 100), 10)
    )
    assert taken == [0, 1]  # the third window brought nothing: it leaves without the fourth's
    assert len(asked) == 2
    assert 0.25 <= took < 0.6


def test_a_batch_waits_for_its_backlog_three_more_windows_at_most() -> None:
    taken, asked, took = asyncio.run(
        asyncio.wait_for(_take_first_with_backlog(1, [0, 0, 0, 0], 100), 10)
    )
    assert taken == [0]  # never grew: one more window only
    taken, asked, took = asyncio.run(
        asyncio.wait_for(_take_first_with_backlog(0, [1, 1, 1, 1, 1], 100), 10)
    )
    # Window 2 brought the first event; it waits windows 3, 4 and 5, and leaves with 4 events.
    assert taken == [0, 1, 2, 3]
    assert len(asked) == 3
    assert 0.45 <= took < 0.9


def test_without_a_backlog_the_window_ends_the_batch() -> None:
    async def take() -> list[int]:
        channel, stream, _ = _open(Stream)
        for value in range(3):
            await channel.send(value=value)
        async for batch in stream.take_events(5, within=0.1):
            taken = [e.value for e in batch]
            break
        await stream.stop()
        return taken

    assert asyncio.run(asyncio.wait_for(take(), 10)) == [0, 1, 2]
