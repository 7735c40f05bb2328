"""Build the Faust App from the settings (Faust's layout: app, topics, tables, agents)."""

from __future__ import annotations

import faust
from faust.types import TransportT

from streams.connection import KafkaConnection
from streams.runtime import faust_repairs as transport
from streams.settings import Settings


def broker_urls(bootstrap: str) -> list[str]:
    """Turn ``host1:9092,host2:9092`` into Faust's ``kafka://`` URL list."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


class App(faust.App):
    """faust.App on :class:`streams.runtime.faust_repairs.Transport` (Faust's consumer, repaired).

    ``kafka_connection`` and ``confirm_end_offsets`` tell the consumer whether and how to
    confirm the listed end of a changelog with a fetch before recovery stops there;
    ``fetch_max_wait`` is its aiokafka fetch wait in seconds.
    """

    kafka_connection: KafkaConnection | None = None
    confirm_end_offsets: bool = False
    fetch_max_wait: float | None = None  # seconds; None keeps Faust's 1.5

    def _new_transport(self) -> TransportT:
        return transport.Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> faust.App:
    """Create the Faust App.

    The aiokafka driver (``kafka://``) is used: Faust's ``confluent://`` driver never finished
    joining its group on the local broker (README, "Why the aiokafka driver"). Values and keys
    stay raw bytes so that decoding errors become dead letters instead of crashing the stream.
    The consumer carries the repairs that keep a rebalance from skipping records
    (:mod:`streams.runtime.faust_repairs`). TLS and SASL come from the one Kafka connection
    (``broker_credentials``). Faust's own web views (``/table``, ``/router``, statistics,
    graph) are off: they expose table contents and the cluster layout, and only the health
    pages and ``/metrics`` are served.
    """
    conn = settings.kafka_connection()
    app = App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap),
        broker_credentials=conn.faust_credentials(),
        store=settings.store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_allow_declare=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        stream_wait_empty=False,
        table_standby_replicas=0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=settings.agent_buffer_max,
        Stream=transport.Stream,
    )
    app.kafka_connection = conn
    app.confirm_end_offsets = settings.kafka_confirm_end_offsets
    app.fetch_max_wait = settings.kafka_fetch_max_wait
    return app
