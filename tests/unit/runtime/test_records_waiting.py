""":func:`streams.runtime.faust_repairs.records_waiting`: the backlog a delivery batch waits for."""

from __future__ import annotations

from faust.types import TP

from streams.runtime.faust_repairs import records_waiting

A0 = TP("leadstream.conversions", 0)
A1 = TP("leadstream.conversions", 1)


def test_counts_the_records_after_each_partitions_last_offset() -> None:
    ends = {A0: 110, A1: 5}
    # Offsets 100..109 taken up to 100: 9 wait; offset 4 was the last of partition 1: none.
    assert records_waiting(ends.__getitem__, {A0: 100, A1: 4}) == 9


def test_a_partition_it_cannot_tell_counts_nothing() -> None:
    def highwater(tp: TP) -> int | None:
        if tp == A0:
            msg = "Partition is not assigned"  # aiokafka's assertion after a rebalance
            raise AssertionError(msg)
        return None  # not fetched yet

    assert records_waiting(highwater, {A0: 1, A1: 1}) == 0


def test_an_end_at_or_before_the_last_offset_counts_nothing() -> None:
    ends = {A0: 11, A1: 3}
    assert records_waiting(ends.__getitem__, {A0: 10, A1: 7}) == 0
