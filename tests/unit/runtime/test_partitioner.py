"""Kafka's murmur2 partitioner, against the vectors of Kafka's own ``UtilsTest``."""

from __future__ import annotations

import pytest

from streams.runtime.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    assert partition_for(b"foobar", 4) == (-790332482 & 0x7FFFFFFF) % 4
    assert {partition_for(str(n).encode(), 4) for n in range(100)} == {0, 1, 2, 3}
