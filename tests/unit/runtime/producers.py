"""What every fake producer in these tests shares."""

from __future__ import annotations


class NoFlush:
    """Outputs waits for a batch's delivery reports by polling, never with ``flush``.

    The producer is shared: its ``flush`` waits for every agent's records, and it sends each
    queued record at once, ignoring ``linger.ms``. A fake with this base fails the test if
    ``flush`` is called.
    """

    def flush(self, timeout: float) -> int:
        msg = "flush waits for every agent's records and ignores linger.ms"
        raise AssertionError(msg)
