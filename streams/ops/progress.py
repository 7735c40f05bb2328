"""A live count for long-running commands (``produce``, ``dead-letters``) and their final count.

On a terminal the count and the rate so far are rewritten in place on one line (a carriage
return about twice a second), so an operator sees a large file or topic moving. Anywhere else
(a pipe, a file, CI logs) nothing is written until the end: a log must not fill with carriage
returns. The final count is one line either way (:meth:`Progress.finish`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

INTERVAL = 0.5  # seconds between two redraws of the live line


def is_terminal(stream: IO[str]) -> bool:
    """Return whether ``stream`` is an interactive terminal (False when closed or unknown)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or the stream is closed
        return False


class Progress:
    """Counts records; on a terminal, shows ``<verb> <count> <noun> (<rate>/s)`` as it goes.

    Args:
        out: Where the live line and the final count go (standard error: standard output
            may carry data).
        verb: What happens to each record (``produced``, ``read``).
        noun: What is counted (``records``, ``dead letters``).
        interval: Seconds between redraws (default :data:`INTERVAL`); 0 redraws on every
            record.
        clock: Monotonic seconds (injected by tests).

    """

    def __init__(
        self,
        out: IO[str],
        verb: str,
        noun: str,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start counting now; the live line is drawn only when ``out`` is a terminal."""
        self.out = out
        self.verb = verb
        self.noun = noun
        self.count = 0
        self.live = is_terminal(out)
        self._interval = INTERVAL if interval is None else interval
        self._clock = clock
        self._started = clock()
        self._shown_at = self._started
        self._width = 0  # length of the live line on screen; 0 when none is

    def add(self, n: int = 1) -> None:
        """Count ``n`` more records; redraw the live line when it is due."""
        self.count += n
        if not self.live:
            return
        now = self._clock()
        if now - self._shown_at >= self._interval:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._shown_at = now
        elapsed = now - self._started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        line = f"{self.verb} {self.count:,} {self.noun} ({rate:,.0f}/s)"
        self.out.write("\r" + line.ljust(self._width))
        self.out.flush()
        self._width = len(line)

    def clear(self) -> None:
        """Erase the live line, so a message (a bad line, an error) starts on a clean line."""
        if self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()
            self._width = 0

    def finish(self, line: str | None = None) -> None:
        """Erase the live line and write the final count (``line``, when given) on its own."""
        self.clear()
        if line is not None:
            self.out.write(line + "\n")
            self.out.flush()
