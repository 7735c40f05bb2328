"""Kafka's default partitioner (murmur2), to pick a key's partition before producing.

The Java client, Faust and librdkafka's ``murmur2_random`` put a keyed record in
``(murmur2(key) & 0x7fffffff) % partitions``. Leadstream needs the same answer when it writes
one record for many keys (the identity claims, :mod:`streams.runtime.agents`): each key must be
claimed in the partition where a booking looked up by that key will arrive.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` of ``data`` as a signed 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for word in struct.unpack_from(f"<{end // 4}I", data):
        k = (word * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:  # noqa: PLR2004
        h ^= data[end + 2] << 16
    if rest >= 2:  # noqa: PLR2004
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """Return the partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
