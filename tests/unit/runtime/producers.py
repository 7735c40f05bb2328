"""What every fake producer in these tests shares, and a way to hold the event loop."""

from __future__ import annotations

import time
from collections.abc import Callable


class NoFlush:
    """Outputs waits for a batch's delivery reports by polling, never with ``flush``.

    The producer is shared: its ``flush`` waits for every agent's records, and it sends each
    queued record at once, ignoring ``linger.ms``. A fake with this base fails the test if
    ``flush`` is called.
    """

    def flush(self, timeout: float) -> int:
        msg = "flush waits for every agent's records and ignores linger.ms"
        raise AssertionError(msg)


def hold_the_loop_until(check: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Block the calling (event-loop) thread until ``check()`` or ``timeout``; return ``check()``.

    Stands for an agent's next batch, whose events are already buffered: it runs without giving
    the loop a turn, so only threads can make progress meanwhile.
    """
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()
