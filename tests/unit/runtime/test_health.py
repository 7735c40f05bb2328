from __future__ import annotations

from streams.ops.lag import PartitionLag
from streams.runtime.health import Progress


def row(partition: int, committed: int | None, lag: int) -> PartitionLag:
    return PartitionLag(
        "g", "t", partition, committed, (committed or 0) + lag, lag, 1.0 if lag else 0.0
    )


def test_a_partition_whose_offset_stops_moving_while_it_lags_is_stalled() -> None:
    progress = Progress(stall_after=60)
    progress.observe([row(0, 10, 5)], now=0)
    progress.observe([row(0, 10, 8)], now=30)
    assert progress.stalled(now=59) == []
    assert progress.stalled(now=61) == [("t", 0)]


def test_moving_offsets_or_no_lag_is_progress() -> None:
    progress = Progress(stall_after=60)
    progress.observe([row(0, 10, 5), row(1, 3, 0)], now=0)
    progress.observe([row(0, 11, 5), row(1, 3, 0)], now=100)
    assert progress.stalled(now=150) == []
    progress.observe([row(0, 11, 0)], now=200)
    assert progress.stalled(now=1000) == []


def test_revoked_partitions_are_forgotten() -> None:
    progress = Progress(stall_after=10)
    progress.observe([row(0, 1, 5)], now=0)
    progress.observe([], now=5)
    assert progress.stalled(now=100) == []
