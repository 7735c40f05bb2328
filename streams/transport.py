"""Faust's aiokafka transport, with table recovery reading to the confirmed end of each changelog.

Faust's recovery asks the consumer for each changelog partition's end (``highwaters``) and stops
reading there. :meth:`Consumer.highwaters` confirms those ends with a fetch
(:mod:`streams.offsets`), so a broker whose ListOffsets answer is short (Tansu) cannot make a
restarted worker forget state. On Kafka the confirmation changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.offsets import fetched_end_offsets

logger = logging.getLogger(__name__)


class Consumer(faust_aiokafka.Consumer):
    """The aiokafka consumer; ``highwaters`` is confirmed by a fetch."""

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """Return the end offset of each partition: listed by the broker, confirmed by a fetch."""
        listed = await super().highwaters(*partitions)
        bootstrap = ",".join(
            f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker_consumer
        )
        confirmed = await asyncio.to_thread(fetched_end_offsets, bootstrap, listed)
        raised = [
            f"{tp.topic}[{tp.partition}] {listed[tp]} -> {end}"
            for tp, end in sorted(confirmed.items())
            if end != listed[tp]
        ]
        if raised:
            logger.info(
                "recovery reads past the broker's listed end offsets: %s", ", ".join(raised)
            )
        return confirmed  # type: ignore[return-value]  # None stays None, as Faust expects


class Transport(faust_aiokafka.Transport):
    """Faust's ``kafka://`` (aiokafka) transport with :class:`Consumer`."""

    Consumer = Consumer
