"""Kafka's murmur2 partitioner, against the vectors of Kafka's own ``UtilsTest``."""

from __future__ import annotations

import pytest

from streams.runtime.partitioner import partition_for

# Kafka's Utils.murmur2 of each key (UtilsTest.testMurmur2), as a signed 32-bit integer.
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_partition_is_kafkas_positive_murmur2_modulo_the_partition_count(
    data: bytes, expected: int
) -> None:
    # Many partition counts pin the hash itself, not just one residue of it.
    for partitions in range(1, 257):
        assert partition_for(data, partitions) == (expected & 0x7FFFFFFF) % partitions


def test_every_partition_is_used() -> None:
    assert {partition_for(str(n).encode(), 4) for n in range(100)} == {0, 1, 2, 3}
