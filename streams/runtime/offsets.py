"""Log end offsets confirmed by a fetch, for table recovery.

Faust restores a table by reading its changelog up to the end offsets the broker lists
(ListOffsets). Kafka answers that exactly. Tansu answers the last batch's base offset + 1 when
that batch held several records (README, "Local broker"), and a recovery that trusts it leaves
the rest of that batch unread: lead state written just before a crash would be forgotten. The
high watermark carried by a fetch response is right on both, so the listed end is confirmed by
fetching from the start of the last batch to the end of the partition. On Kafka that reads one
record per partition and changes nothing, so it is only done when
``LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS`` is on (the Tansu fallback of the local stack).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.connection import KafkaConnection, as_connection

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=tuple[str, int])  # (topic, partition); Faust's TP is such a NamedTuple


def fetched_end_offsets(
    conn: KafkaConnection | str, listed: Mapping[K, int | None], timeout: float = 15.0
) -> dict[K, int | None]:
    """Return ``listed`` end offsets, each raised to the end a fetch sees.

    ``listed`` maps ``(topic, partition)`` keys (Faust's ``TP``) to the listed end offset. A
    partition whose listed end is 0 or None is empty and is not fetched. If a partition does not
    reach its end within ``timeout`` seconds, its listed end (or the furthest offset seen) is
    kept and a warning says so.
    """
    ends: dict[K, int | None] = dict(listed)
    keys = {(key[0], key[1]): key for key, end in listed.items() if end}
    if not keys:
        return ends
    consumer = Consumer(
        as_connection(conn).librdkafka(
            **{
                # No offsets are committed and no group is joined (assign, not subscribe).
                "group.id": f"leadstream-end-offsets-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "latest",
                "fetch.wait.max.ms": 50,
            }
        )
    )
    pending = set(keys)
    deadline = time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(t, p, (listed[k] or 1) - 1) for (t, p), k in keys.items()])
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            coordinates = (str(msg.topic()), int(msg.partition() or 0))
            err = msg.error()
            if coordinates not in keys:
                continue
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                logger.warning("confirming the end of %s[%d]: %s", *coordinates, err)
                continue
            # A record at offset n means the end is at least n + 1; EOF's offset is the end.
            offset = int(msg.offset() or 0)
            seen = offset if err is not None else offset + 1
            key = keys[coordinates]
            ends[key] = max(ends[key] or 0, seen)
            if err is not None:
                pending.discard(coordinates)
    finally:
        consumer.close()
    for topic, partition in sorted(pending):
        logger.warning(
            "the end of %s[%d] was not confirmed within %.0fs; using %s",
            topic,
            partition,
            timeout,
            ends[keys[(topic, partition)]],
        )
    return ends
