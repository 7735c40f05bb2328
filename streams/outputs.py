"""Output sends shared by the agents: dead letters are logged, counted and produced in one place."""

from __future__ import annotations

import logging
import time

from streams.metrics import Metrics
from streams.pipeline import DeadLetterOut
from streams.tables import Tables
from streams.topics import Topics

logger = logging.getLogger(__name__)


class Outputs:
    """Produces dead letters (with their ERROR log line and metric)."""

    def __init__(self, topics: Topics, tables: Tables, metrics: Metrics) -> None:
        """Bind the dead-letter topic, its once-per-record ledger and the metrics."""
        self.topics = topics
        self.tables = tables
        self.metrics = metrics

    async def send_dead(self, out: DeadLetterOut) -> None:
        """Dead-letter one record once: ERROR log (no raw PII in messages), metric, send.

        Must run in the context of the event being processed (the ledger is a table).
        """
        if out.source:
            key = out.source.encode()
            if self.tables.dead_lettered.get(key) is not None:
                self.metrics.core.labels("duplicate_dead_letter").inc()
                return
            self.tables.dead_lettered[key] = str(int(time.time() * 1000)).encode()
        logger.error("dead letter (%s) %s: %s", out.reason, out.source, out.message)
        self.metrics.dead_letters.labels(out.reason).inc()
        await self.topics.dead_letter.send(key=out.key, value=out.value)
