"""Destinations are plural: Meta gets its own topic, agents and Delivery only when configured."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP
from pydantic import SecretStr

from streams.runtime.destinations import MetaDestination, TikTokDestination
from streams.runtime.worker import Worker, all_topic_names
from streams.settings import Settings


def _worker(**overrides: Any) -> Worker:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",
        schema_registry_url="http://127.0.0.1:9",
        tiktok_pixel_code="PIXEL",
        tiktok_access_token=SecretStr("test-token"),
        topic_replication=1,
        app_id="ls-dest",
        **overrides,
    )
    return Worker(settings)


def _agent_names(worker: Worker) -> set[str]:
    return {agent.name.rsplit(".", 1)[-1] for agent in worker.app.agents.values()}


def test_tiktok_only_is_unchanged() -> None:
    worker = _worker()
    assert worker.topics.meta_conversions is None
    assert worker.meta_delivery is None
    assert worker.deliveries == [worker.delivery]
    assert isinstance(worker.delivery.destination, TikTokDestination)
    assert not any("meta" in name for name in all_topic_names(worker.topics))
    assert not {"fanout_meta", "deliver_meta"} & _agent_names(worker)


def test_meta_configured_adds_its_topic_agents_and_delivery() -> None:
    worker = _worker(meta_pixel_id="123456789012345", meta_access_token=SecretStr("m-token"))
    assert worker.topics.meta_conversions is not None
    assert worker.topics.meta_conversions.get_topic_name() == "ls-dest-conversions-meta"
    assert "ls-dest-conversions-meta" in all_topic_names(worker.topics)
    assert worker.meta_delivery is not None
    assert isinstance(worker.meta_delivery.destination, MetaDestination)
    assert worker.meta_delivery.destination.name == "meta"
    assert worker.deliveries == [worker.delivery, worker.meta_delivery]
    # Its own circuits and its own outputs: a paused Meta never holds TikTok's batch.
    assert worker.meta_delivery.circuits is not worker.delivery.circuits
    assert worker.meta_delivery.outputs is not worker.delivery.outputs
    assert {"fanout_meta", "deliver_meta"} <= _agent_names(worker)


def test_the_deliver_agents_write_on_a_producer_of_their_own() -> None:
    # Their receipts and ledger writes do not queue behind the lead agent's bulk writes.
    worker = _worker(meta_pixel_id="123456789012345", meta_access_token=SecretStr("m-token"))
    assert worker.meta_delivery is not None
    shared = worker.outputs.producer
    own = worker.delivery.outputs.producer
    assert own is not shared
    assert worker.meta_delivery.outputs.producer is own
    assert worker.meta_delivery.outputs is not worker.delivery.outputs
    agents = worker.agents
    for outputs in (agents.booking_outputs, agents.identity_outputs, agents.fanout_outputs):
        assert outputs.producer is shared
    # One pool of threads waits for both producers' acknowledgements.
    assert worker.delivery.outputs._waits is worker.outputs._waits


def test_a_paused_meta_circuit_is_not_a_stall() -> None:
    worker = _worker(meta_pixel_id="123456789012345", meta_access_token=SecretStr("m-token"))
    assert worker.meta_delivery is not None
    from streams.runtime.delivery import Circuit

    stuck = [("leadstream.conversions", 0)]
    worker.progress = SimpleNamespace(stalled=lambda now: stuck)  # type: ignore[assignment]
    assert worker.stalled() == stuck
    worker.meta_delivery.circuits["capi:123456789012345"] = Circuit(open=True)
    assert worker.stalled() == []


def test_a_meta_only_conversion_is_skipped_by_tiktok_and_sent_as_is_by_meta() -> None:
    from streams.meta.payload import Skipped
    from tests.unit.factories import META_LEAD_ID, NOW, make_conversion

    worker = _worker(meta_pixel_id="123456789012345", meta_access_token=SecretStr("m-token"))
    assert worker.meta_delivery is not None
    stage = make_conversion(
        event="Lead", event_id="evt-9:Lead", destination="meta", meta_lead_id=META_LEAD_ID
    )
    skipped = worker.delivery.destination.prepare(stage, NOW)
    assert isinstance(skipped, Skipped) and skipped.reason == "not_for_destination"
    prepared = worker.meta_delivery.destination.prepare(stage, NOW)
    assert not isinstance(prepared, (Skipped, Exception))
    assert (prepared.event_name, prepared.event_id) == ("Lead", "evt-9:Lead")  # type: ignore[union-attr]
    assert prepared.body["custom_data"]["event_source"] == "crm"  # type: ignore[union-attr]
    other = make_conversion(destination="elsewhere")
    assert isinstance(worker.meta_delivery.destination.prepare(other, NOW), Skipped)


def test_a_deliver_batch_counts_the_inputs_not_yet_processed_as_its_backlog() -> None:
    # A part-full batch waits one more linger when the backlog would fill it: on a backlog of
    # inputs its first request would otherwise carry what one linger produced.
    worker = _worker(meta_pixel_id="123456789012345", meta_access_token=SecretStr("m-token"))
    consumer: Any = worker.app.consumer
    consumer.highwater = lambda tp: 1_000
    conversions = TP("leadstream.conversions", 0)
    for topic in ("crm.lead-status-changed", "leads.form-submitted", "ls-dest-bookings-by-lead"):
        consumer._read_offset[TP(topic, 0)] = 899  # 100 records each not processed yet
    consumer._read_offset[TP("leadstream.deliveries", 0)] = 0  # nothing of a deliver agent's
    consumer._read_offset[conversions] = 499  # Meta's copy is made from here

    agents = worker.agents
    assert agents._waiting({conversions: 989}, agents._upstream) == 10 + 300
    meta = TP("ls-dest-conversions-meta", 0)
    assert agents._waiting({meta: 989}, agents._meta_upstream) == 10 + 300 + 500
