"""When a lead's state next needs attention (a wait expires, an entry ages out), and an index.

The index lives in memory and is rebuilt from the lead table's changelog on recovery, so the
periodic sweep touches only leads that are due instead of scanning the whole table.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta

from streams.domain.types import LeadState, Rules

# A lead whose sweep changed nothing is looked at again no sooner than this.
MIN_RESCHEDULE = timedelta(seconds=30)


def next_due(state: LeadState, rules: Rules, now: datetime) -> datetime | None:
    """Return the earliest time :func:`streams.domain.lead.expire` would change ``state``."""
    times = [p.received_at + rules.pending_wait for p in state.pending]
    times += [t + rules.ledger_retention for t in state.sent.values()]
    times += [t + rules.input_dedup_window for t in state.seen.values()]
    if state.context is not None:
        last = state.updated_at or state.context.occurred_at
        times.append(last + rules.lead_retention)
    if not times:
        return None
    return max(min(times), now + MIN_RESCHEDULE) if min(times) <= now else min(times)


class DueIndex:
    """Per partition, which leads are due when; lazy deletion keeps updates O(log n)."""

    def __init__(self) -> None:
        """Start empty."""
        self._heaps: dict[int, list[tuple[datetime, str]]] = {}
        self._due: dict[int, dict[str, datetime]] = {}

    def schedule(self, partition: int, lead_id: str, when: datetime | None) -> None:
        """Set (or clear, with None) when ``lead_id`` is next due."""
        due = self._due.setdefault(partition, {})
        if when is None:
            due.pop(lead_id, None)
            return
        if due.get(lead_id) == when:
            return
        due[lead_id] = when
        heapq.heappush(self._heaps.setdefault(partition, []), (when, lead_id))

    def discard(self, partition: int, lead_id: str) -> None:
        """Forget ``lead_id``."""
        self._due.get(partition, {}).pop(lead_id, None)

    def drop_partition(self, partition: int) -> None:
        """Forget a partition (revoked from this worker)."""
        self._heaps.pop(partition, None)
        self._due.pop(partition, None)

    def pop_due(self, partition: int, now: datetime) -> Iterator[str]:
        """Yield, and unschedule, the leads of ``partition`` due at or before ``now``."""
        heap = self._heaps.get(partition, [])
        due = self._due.get(partition, {})
        while heap and heap[0][0] <= now:
            when, lead_id = heapq.heappop(heap)
            if due.get(lead_id) == when:
                del due[lead_id]
                yield lead_id

    def __len__(self) -> int:
        """How many leads are scheduled."""
        return sum(len(d) for d in self._due.values())
