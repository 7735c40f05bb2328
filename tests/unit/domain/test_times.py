"""Millisecond timestamps: exact both ways, floored like Avro's timestamp-millis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from streams.domain.times import EPOCH, from_millis, to_millis

aware = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(aware)
def test_to_millis_is_the_floored_division_of_the_time_since_the_epoch(dt: datetime) -> None:
    assert to_millis(dt) == (dt - EPOCH) // timedelta(milliseconds=1)


@given(st.integers(min_value=-62_135_596_800_000 + 86_400_000, max_value=253_402_214_400_000))
def test_millis_round_trip(ms: int) -> None:
    assert to_millis(from_millis(ms)) == ms


def test_before_the_epoch_and_below_a_millisecond_floor_down() -> None:
    assert to_millis(EPOCH - timedelta(microseconds=1)) == -1
    assert to_millis(EPOCH + timedelta(microseconds=999)) == 0
    assert to_millis(datetime(1970, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == 0
