"""Assembles a Leadstream worker: settings in, a Faust App with every agent, table and page out."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import EventT

from streams.connection import check_connection
from streams.domain.due import DueIndex
from streams.errors import ConfigError, LeadstreamError
from streams.ops.lag import LagProbe, slowest
from streams.runtime import faust_sensor
from streams.runtime.admin import ensure_topics
from streams.runtime.agents import Agents
from streams.runtime.app import create_app
from streams.runtime.delivery import Delivery
from streams.runtime.destinations import Destination, TikTokDestination, meta_destination
from streams.runtime.health import Progress
from streams.runtime.metrics import Metrics
from streams.runtime.outputs import Outputs, producer_for
from streams.runtime.reader import ConversionsReader
from streams.runtime.tables import declare_tables
from streams.runtime.topics import Topics, declare_topics
from streams.serde import contract
from streams.serde.avro import AvroSerde
from streams.serde.pipeline import Pipeline
from streams.settings import Settings
from streams.tiktok.client import EventsApiClient, TikTokEventsClient

logger = logging.getLogger(__name__)


def check_settings(settings: Settings) -> None:
    """Fail fast, naming the variable, when the worker cannot deliver anything."""
    if settings.tiktok_access_token is None or not settings.tiktok_access_token.get_secret_value():
        msg = "LEADSTREAM_TIKTOK_ACCESS_TOKEN is not set: the worker cannot call the Events API"
        raise ConfigError(msg)
    if not settings.tiktok_pixel_code and not settings.tiktok_crm_event_set_id:
        msg = (
            "set LEADSTREAM_TIKTOK_PIXEL_CODE (web events) "
            "and/or LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID"
        )
        raise ConfigError(msg)


def replication_warning(settings: Settings) -> str | None:
    """Return the start-up warning for topics with fewer than two replicas, unless allowed."""
    if settings.topic_replication >= 2 or settings.allow_low_replication:  # noqa: PLR2004
        return None
    return (
        f"LEADSTREAM_TOPIC_REPLICATION={settings.topic_replication}: topics Leadstream creates "
        "lose data when one broker fails; set it to 3 (or LEADSTREAM_ALLOW_LOW_REPLICATION=true "
        "for a single-broker test cluster)"
    )


def all_topic_names(topics: Topics) -> list[str]:
    """Every topic the worker reads or writes, internal ones included."""
    return [
        t.get_topic_name()
        for t in (
            topics.form,
            topics.booking,
            topics.status,
            topics.conversions,
            topics.deliveries,
            topics.dead_letter,
            topics.bookings_by_lead,
            topics.bookings_by_identity,
            topics.identity,
            topics.ticks,
            *([topics.meta_conversions] if topics.meta_conversions is not None else []),
        )
    ]


class Worker:
    """A built worker: the Faust app plus the objects tests and pages look at."""

    def __init__(
        self,
        settings: Settings,
        client: EventsApiClient | None = None,
        metrics: Metrics | None = None,
        meta: Destination | None = None,
    ) -> None:
        """Build the app; nothing connects until Faust starts it.

        ``client`` (TikTok's) and ``meta`` replace the real ones in tests; Meta is
        built from the settings when they configure it, and is absent otherwise.
        """
        self.settings = settings
        self.conn = settings.kafka_connection()
        self.metrics = metrics or Metrics()
        self.app: faust.App = create_app(settings)
        self.topics = declare_topics(self.app, settings)
        self.serde = AvroSerde.from_settings(settings)
        self.pipeline = Pipeline.from_settings(self.serde, settings)
        self.due = DueIndex()
        self.tables = declare_tables(self.app, settings, on_lead_changelog=self._on_lead_changelog)
        self.outputs = Outputs(self.topics, self.tables, self.metrics, producer_for(self.conn))
        # The deliver agents write on a producer of their own, so their few records per request
        # (receipts, the delivered ledger) do not queue behind the lead agent's bulk writes on
        # the shared producer's broker connections (README "Performance").
        delivery_outputs = self.outputs.sibling(producer_for(self.conn))
        if client is None:
            token = settings.tiktok_access_token
            client = TikTokEventsClient(
                settings.tiktok_api_url,
                token.get_secret_value() if token else "",
                timeout=settings.tiktok_timeout,
            )
        self.delivery = Delivery(
            settings,
            TikTokDestination(settings, client),
            self.pipeline,
            self.topics,
            self.tables,
            self.metrics,
            delivery_outputs,  # the deliver agent's own outputs
        )
        meta = meta or meta_destination(settings)
        self.meta_delivery = (
            None
            if meta is None or self.topics.meta_conversions is None
            else Delivery(
                settings,
                meta,
                self.pipeline,
                self.topics,
                self.tables,
                self.metrics,
                delivery_outputs.sibling(),  # the deliver_meta agent's own outputs
            )
        )
        self.deliveries = [d for d in (self.delivery, self.meta_delivery) if d is not None]
        self.agents = Agents(
            self.app,
            settings,
            self.topics,
            self.tables,
            self.pipeline,
            self.delivery,
            self.metrics,
            self.outputs,
            self.due,
            meta_delivery=self.meta_delivery,
        )
        self.reader = ConversionsReader(
            self.app,
            self.conn,
            settings.topic_conversions,
            settings.app_id,
            self.delivery,
            partitions=settings.topic_partitions,
            batch_max=settings.delivery_batch_max,
            linger=settings.delivery_linger,
            fetch_max_wait=settings.kafka_fetch_max_wait,
            upstream=self.agents.inputs_waiting,
        )
        self._read_conversions()
        self._pages()

    def _read_conversions(self) -> None:
        """Run the conversions reader, on the partitions Faust gives the lead agent here."""
        app, reader = self.app, self.reader
        lead_topics = set(self.topics.lead_inputs.topics)

        def numbers(tps: Any) -> set[int]:
            return {tp.partition for tp in tps if tp.topic in lead_topics}

        @app.on_partitions_assigned.connect
        async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            (assigned,) = args
            reader.assign(numbers(assigned))

        @app.on_partitions_revoked.connect
        async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            (revoked,) = args
            await reader.revoke(numbers(revoked))

        @app.task
        async def read_conversions() -> None:
            await reader.run()

    async def _on_lead_changelog(self, event: EventT) -> None:
        await self.agents.on_lead_changelog(event)

    def prepare(self) -> None:
        """Create missing topics and register the schemas before Faust starts.

        ``leadstream worker`` checks the connection first (:func:`check_connection`).
        """
        logger.info("Kafka: %s", self.conn.describe())
        warning = replication_warning(self.settings)
        if warning:
            logger.warning("%s", warning)
        ensure_topics(
            self.conn,
            all_topic_names(self.topics),
            partitions=self.settings.topic_partitions,
            replication=self.settings.topic_replication,
        )
        for record in contract.RECORDS:
            self.serde.register(record.topic(self.settings), record.name)

    def _pages(self) -> None:
        """Health endpoints, ``/metrics`` (Faust's Prometheus sensor + ours) and the lag probe."""
        app, tables, metrics, settings = self.app, self.tables, self.metrics, self.settings
        faust_sensor.setup(app, metrics.registry, name_prefix="faust")
        metrics.watch_tables(
            lambda: {
                "leads": tables.leads,
                "identity": tables.identity,
                "delivered": tables.delivered,
                "dead_lettered": tables.dead_lettered,
            }
        )
        self.progress = Progress(stall_after=settings.liveness_stall_seconds)
        self._probe: LagProbe | None = None
        self._reader_probe: LagProbe | None = None
        #: Why Kafka cannot be reached, while the worker is not ready (``/health/ready``).
        self.kafka_problem: str | None = None

        @app.on_partitions_assigned.connect
        async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            (assigned,) = args
            # ``assigned`` is the whole new assignment (eager rebalance); the consumer's own view
            # is added so a partition still owned is never dropped, whichever is updated first.
            given = {(tp.topic, tp.partition) for tp in assigned}
            self.keep_lag(given | self._assigned())

        @app.timer(settings.lag_interval)
        async def probe_connection() -> None:
            await self.check_kafka()

        @app.timer(settings.lag_interval)
        async def probe_lag() -> None:
            await self.measure_lag()

        @app.page("/health/live")
        async def live(web: Any, request: Any) -> Any:
            stalled = self.stalled()
            body = {"status": "stuck" if stalled else "ok", "stalled": [list(tp) for tp in stalled]}
            return web.json(body, status=503 if stalled else 200)

        @app.page("/health/ready")
        async def ready(web: Any, request: Any) -> Any:
            body, status = self.readiness()
            return web.json(body, status=status)

    def readiness(self) -> tuple[dict[str, Any], int]:
        """Return the ``/health/ready`` body and status: 200 once tables are recovered.

        While not ready, ``reason`` says why: Kafka cannot be reached (the last
        :meth:`check_kafka` failed), or recovery has not finished.
        """
        app = self.app
        # TableManagerT does not declare the recovery service Faust's TableManager has.
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        recovered = recovery.completed.is_set()
        ok = recovered and app.consumer is not None and self.kafka_problem is None
        try:
            assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        except ConsumerNotStarted:
            assigned = []
        body: dict[str, Any] = {"ready": ok, "recovered": recovered, "assigned": assigned}
        if not ok:
            body["reason"] = self.kafka_problem or (
                "table recovery has not finished" if not recovered else "no consumer yet"
            )
        return body, 200 if ok else 503

    async def check_kafka(self) -> None:
        """Check the Kafka connection; keep the one-line reason it fails for ``/health/ready``.

        Faust starts timers and the web server only after table recovery, so this covers a
        worker that was up and lost its connection (a rotated password, an expired
        certificate); a worker that cannot connect at start stops before Faust does.
        """
        try:  # the full connect timeout: a busy broker is not a lost one
            await asyncio.to_thread(
                check_connection, self.conn, self.settings.kafka_connect_timeout
            )
        except LeadstreamError as exc:
            if self.kafka_problem is None:
                logger.error("cannot connect to Kafka: %s", exc)
            self.kafka_problem = str(exc)
        else:
            if self.kafka_problem is not None:
                logger.info("connected to Kafka again")
            self.kafka_problem = None

    def _assigned(self) -> set[tuple[str, int]]:
        """Return the source partitions this worker reads: Faust's and the conversions reader's."""
        return self._faust_assigned() | self._reader_assigned()

    def _faust_assigned(self) -> set[tuple[str, int]]:
        """Return the source partitions Faust assigned to this worker (changelogs excluded)."""
        try:
            assignment = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return set()
        return {
            (tp.topic, tp.partition) for tp in assignment if not tp.topic.endswith("-changelog")
        }

    def _reader_assigned(self) -> set[tuple[str, int]]:
        return {(self.reader.topic, p) for p in self.reader.owned}

    def keep_lag(self, assigned: set[tuple[str, int]]) -> None:
        """Drop lag series of partitions this worker no longer owns (after a rebalance)."""
        dropped = self.metrics.keep_lag(assigned)
        if dropped:
            logger.info(
                "lag metrics dropped for partitions no longer assigned: %s",
                ", ".join(f"{topic}:{partition}" for topic, partition in dropped),
            )

    async def measure_lag(self) -> None:
        """Probe lag of this worker's assigned partitions; export it and feed liveness.

        Faust's partitions are measured against the app's group, the conversions reader's
        against its own (``<app id>-deliver``). Series of partitions outside the current
        assignment are dropped first, also when the probe fails, so a revoked partition never
        shows a frozen lag.
        """
        faust_tps, reader_tps = self._faust_assigned(), self._reader_assigned()
        assigned = faust_tps | reader_tps
        self.keep_lag(assigned)
        if not assigned:
            return
        confirm = self.settings.kafka_confirm_end_offsets
        if self._probe is None:
            self._probe = LagProbe(self.conn, self.settings.app_id, confirm_end_offsets=confirm)
        if self._reader_probe is None:
            self._reader_probe = LagProbe(self.conn, self.reader.group, confirm_end_offsets=confirm)
        try:
            rows = await asyncio.to_thread(
                self._probe.measure, sorted({topic for topic, _ in faust_tps}), faust_tps
            )
            if reader_tps:
                rows += await asyncio.to_thread(
                    self._reader_probe.measure, [self.reader.topic], reader_tps
                )
        except Exception as exc:  # noqa: BLE001 - a failed probe must not stop the worker
            logger.warning("consumer lag probe failed: %s", exc)
            return
        rows = slowest(rows)
        # A rebalance may have happened while the probe ran: export only what is still ours.
        current = self._assigned()
        for row in rows:
            if (row.topic, row.partition) in current:
                self.metrics.set_lag(row.topic, row.partition, row.lag, row.lag_seconds)
        self.keep_lag(current)
        self.progress.observe(rows, time.monotonic())

    def stalled(self) -> list[tuple[str, int]]:
        """Partitions stuck with lag; empty while delivery is paused on purpose (auth circuit)."""
        if any(c.open for d in self.deliveries for c in d.circuits.values()):
            return []
        return self.progress.stalled(time.monotonic())

    def run(self, loglevel: str = "INFO") -> None:
        """Run until stopped (SIGTERM/SIGINT), the way ``leadstream worker`` does."""
        discard_local_tables(self.settings.store, Path(self.app.conf.tabledir))
        worker = faust.Worker(self.app, loglevel=loglevel, quiet=True)
        freeze_startup_heap()
        worker.execute_from_commandline()


def freeze_startup_heap() -> int:
    """Keep what the worker built before it starts (modules, Faust, its wiring) out of full GCs.

    Those objects live as long as the worker, yet each full collection scanned them all: about
    110,000 objects, a 75-123 ms pause every 5-10 s in the latency runs (500 and 1,000 status
    changes/s). Frozen, a full collection scans what came later: 7-29 ms (README "Latency
    levers"). Returns how many objects were frozen.
    """
    gc.collect()  # what is already garbage is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()


def discard_local_tables(store: str, tabledir: Path) -> bool:
    """Remove RocksDB table files left by an earlier run, so recovery reads the changelog.

    A table write reaches the local RocksDB store when the agent makes it, but its changelog
    record is produced only after the batch's outputs are durable (:mod:`streams.runtime.outputs`).
    After a SIGKILL the local store can therefore hold a state ("conversion sent") whose
    conversion never reached Kafka; Faust would restore from that store and the input, read
    again, would be skipped as a duplicate: a lost conversion (the RocksDB kill drill showed
    it). Until table writes are deferred past output durability, every start rebuilds the
    tables from the changelog; RocksDB still keeps the state off the heap.

    Returns:
        True when local table files were removed.

    """
    if not store.startswith("rocksdb") or not tabledir.exists():
        return False
    logger.info("RocksDB tables are rebuilt from the changelog: removing %s", tabledir)
    shutil.rmtree(tabledir)
    return True
