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
