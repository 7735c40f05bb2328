"""Output sends shared by the agents: dead letters are logged, counted and produced in one place."""

from __future__ import annotations

import logging

from streams.metrics import Metrics
from streams.pipeline import DeadLetterOut
from streams.topics import Topics

logger = logging.getLogger(__name__)


class Outputs:
    """Produces dead letters (with their ERROR log line and metric)."""

    def __init__(self, topics: Topics, metrics: Metrics) -> None:
        """Bind the dead-letter topic and the metrics."""
        self.topics = topics
        self.metrics = metrics

    async def send_dead(self, out: DeadLetterOut) -> None:
        """Dead-letter one record: ERROR log (messages carry no raw PII), metric, send."""
        logger.error("dead letter (%s): %s", out.reason, out.message)
        self.metrics.dead_letters.labels(out.reason).inc()
        await self.topics.dead_letter.send(key=out.key, value=out.value)
