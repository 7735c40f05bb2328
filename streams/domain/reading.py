"""Where the conversions reader starts, what it commits, and how long a part-full batch waits.

The conversions reader (``streams.runtime.reader``) delivers ``leadstream.conversions`` with a
plain Kafka consumer, outside Faust, and keeps its progress as the offsets of a consumer group
of its own (``<app id>-deliver``). These are its decisions, as plain values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: More windows a part-full batch may wait for a backlog that would fill it: the first, then two
#: more while the batch grows. On a backlog the lead agent's first windows carry only a few
#: conversions while it starts (5, then 41, then 954 in one benchmark run: README "Performance").
BACKLOG_WINDOWS = 3


def deliver_group(app_id: str) -> str:
    """Return the group whose committed offsets are the delivery's progress on conversions."""
    return f"{app_id}-deliver"


def start_offset(own: int | None, legacy: int | None) -> int | None:
    """Where a newly assigned conversions partition is read from (None: its first record).

    ``own`` is the deliver group's committed offset. ``legacy`` is the app's own group's, which
    a worker before this reader committed once a conversion was delivered; it is read only when
    the deliver group has none, so an upgrade goes on where the old deliver agent stopped.
    """
    if own is not None and own >= 0:
        return own
    if legacy is not None and legacy >= 0:
        return legacy
    return None


def offsets_to_commit(done: Iterable[tuple[int, int]], owned: Iterable[int]) -> dict[int, int]:
    """Return the offset to commit per partition after a batch: its last record there, plus 1.

    ``done`` holds the batch's (partition, offset) pairs; only partitions still ``owned`` are
    committed (a revoked one's progress belongs to its next owner, who reads it from there).
    """
    keep = set(owned)
    out: dict[int, int] = {}
    for partition, offset in done:
        if partition in keep and offset + 1 > out.get(partition, -1):
            out[partition] = offset + 1
    return out


def wait_again(held: int, size_then: int, size: int, max_: int, backlog: Callable[[], int]) -> bool:
    """Whether a part-full batch waits one more window for records already waiting.

    ``held`` windows were added so far; ``size_then`` is the batch's size when the last one
    began (0 before the first), ``size`` its size now, ``backlog`` counts the records known to
    wait (this worker's conversions and the inputs its lead agent has not processed; asked only
    when the rest allows another window). A batch waits
    while the backlog would fill it and it grew in the last window, :data:`BACKLOG_WINDOWS`
    more windows at most; a batch that stopped growing leaves.
    """
    return held < BACKLOG_WINDOWS and size_then < size < max_ and size + backlog() >= max_
