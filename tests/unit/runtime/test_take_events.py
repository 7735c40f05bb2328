""":class:`streams.runtime.faust_repairs.Stream`'s ``take_events``, on an in-memory channel.

No broker: a Faust stream over ``app.channel()`` of an app that is never started (its flow
control resumed by hand), with the stream's acknowledgements recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from streams.runtime.app import App
from streams.runtime.faust_repairs import Stream


async def _take(stream_class: type[faust.Stream], sent: int, max_: int) -> list[dict[str, Any]]:
    """Take batches of ``sent`` values; note per batch what was acknowledged and buffered."""
    app = App("take-events-test", broker="kafka://127.0.0.1:1", Stream=stream_class)
    app.finalize()
    app.flow_control.resume()
    channel = app.channel(maxsize=100)
    stream = app.stream(channel)
    acked: list[int] = []

    async def ack(event: Any) -> bool:
        acked.append(event.value)
        return True

    stream.ack = ack  # type: ignore[method-assign]
    for value in range(sent):
        await channel.send(value=value)
    seen: list[dict[str, Any]] = []
    async for batch in stream.take_events(max_, within=0.05):
        note: dict[str, Any] = {"batch": [e.value for e in batch], "acked": list(acked)}
        await asyncio.sleep(0.01)  # a flush: the stream may run meanwhile
        note["acked_after_await"] = list(acked)
        note["stream_at"] = stream.current_event.value if stream.current_event else None
        seen.append(note)
        if sum(len(n["batch"]) for n in seen) == sent:
            break
    await stream.stop()
    return seen


def test_batches_hold_at_most_max_and_are_acknowledged_after_the_caller() -> None:
    seen = asyncio.run(asyncio.wait_for(_take(Stream, 5, 2), 10))
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
