"""The conversions reader's decisions: where it starts, what it commits, how long a batch waits."""

from __future__ import annotations

import pytest

from streams.domain import reading


def test_the_deliver_group_is_named_after_the_app() -> None:
    assert reading.deliver_group("leadstream") == "leadstream-deliver"


@pytest.mark.parametrize(
    ("own", "legacy", "start"),
    [
        (7, 3, 7),  # the deliver group's progress wins
        (0, 3, 0),  # offset 0 is a committed offset, not "none"
        (None, 3, 3),  # an upgrade: where the old deliver agent stopped
        (-1001, 3, 3),  # librdkafka's "no offset" (OFFSET_INVALID)
        (None, None, None),  # a new deployment: the first record
        (-1001, -1001, None),
    ],
)
def test_start_offset(own: int | None, legacy: int | None, start: int | None) -> None:
    assert reading.start_offset(own, legacy) == start


def test_a_batch_commits_its_last_offset_plus_one_per_partition() -> None:
    done = [(0, 10), (1, 4), (0, 12), (0, 11), (1, 5)]
    assert reading.offsets_to_commit(done, owned={0, 1}) == {0: 13, 1: 6}


def test_a_revoked_partition_commits_nothing() -> None:
    assert reading.offsets_to_commit([(0, 10), (1, 4)], owned={1}) == {1: 5}
    assert reading.offsets_to_commit([(0, 10)], owned=set()) == {}


def test_a_part_full_batch_waits_for_a_backlog_that_would_fill_it() -> None:
    assert reading.wait_again(held=0, size_then=0, size=400, max_=1000, backlog=lambda: 600)
    assert not reading.wait_again(held=0, size_then=0, size=400, max_=1000, backlog=lambda: 599)


def test_a_batch_waits_only_while_it_grows() -> None:
    assert reading.wait_again(held=1, size_then=300, size=400, max_=1000, backlog=lambda: 5000)
    assert not reading.wait_again(held=1, size_then=400, size=400, max_=1000, backlog=lambda: 5000)


def test_a_batch_waits_three_more_windows_at_most() -> None:
    grows = [reading.wait_again(h, 100 * h, 100 * h + 50, 1000, lambda: 10_000) for h in range(5)]
    assert grows == [True, True, True, False, False]
    assert reading.BACKLOG_WINDOWS == 3


def test_a_full_batch_never_waits() -> None:
    assert not reading.wait_again(held=0, size_then=0, size=1000, max_=1000, backlog=lambda: 10_000)


def test_the_backlog_is_asked_only_when_another_window_is_possible() -> None:
    def backlog() -> int:
        msg = "the backlog was asked"
        raise AssertionError(msg)

    assert not reading.wait_again(held=3, size_then=0, size=1, max_=1000, backlog=backlog)
    assert not reading.wait_again(held=0, size_then=5, size=5, max_=1000, backlog=backlog)
