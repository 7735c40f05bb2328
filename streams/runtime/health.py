"""Liveness from progress: a worker is stuck when it has lag but its committed offsets stop moving.

Pure bookkeeping (the caller passes the clock), fed by the worker's periodic lag probe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.ops.lag import PartitionLag


@dataclass
class Progress:
    """Per partition: the last committed offset seen and when it last moved (or had no lag)."""

    stall_after: float
    _committed: dict[tuple[str, int], int | None] = field(default_factory=dict)
    _progress_at: dict[tuple[str, int], float] = field(default_factory=dict)
    _lagging: set[tuple[str, int]] = field(default_factory=set)

    def observe(self, rows: Iterable[PartitionLag], now: float) -> None:
        """Record one lag measurement taken at monotonic time ``now``."""
        seen = set()
        for row in rows:
            tp = (row.topic, row.partition)
            seen.add(tp)
            moved = self._committed.get(tp, -1) != row.committed
            if moved or row.lag == 0 or tp not in self._progress_at:
                self._progress_at[tp] = now
            self._committed[tp] = row.committed
            if row.lag > 0:
                self._lagging.add(tp)
            else:
                self._lagging.discard(tp)
        for tp in set(self._committed) - seen:  # revoked: not ours to judge any more
            self._committed.pop(tp, None)
            self._progress_at.pop(tp, None)
            self._lagging.discard(tp)

    def stalled(self, now: float) -> list[tuple[str, int]]:
        """Partitions with lag whose committed offset has not moved for ``stall_after`` seconds."""
        return sorted(
            tp for tp in self._lagging if now - self._progress_at.get(tp, now) > self.stall_after
        )
