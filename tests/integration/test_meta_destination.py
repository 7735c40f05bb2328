"""Issue 17 end to end on the real broker: the same leads reach TikTok and Meta, independently.

Conversions are produced straight onto the worker's conversions topic (the delivery agents'
input); the TikTok sandbox of the session stack and a standalone Meta sandbox answer. A Meta
outage (auth error, then 5xx) must leave TikTok's delivery untouched, and Meta must catch up
afterwards with nothing lost and nothing doubled.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from streams.local.meta_sandbox.server import MetaSandbox, SandboxConfig
from streams.local.stack import LocalStack, WorkerProcess, wait_until
from streams.serde.avro import AvroSerde
from tests.conftest import Names
from tests.integration.helpers import (
    NOW,
    form,
    metric_value,
    records_on,
    status,
    wait_caught_up,
)
from tests.integration.helpers import produce as produce_json

META_PIXEL = "123456789012345"
META_TOKEN = "meta-int-token"  # noqa: S105 - the local sandbox's token
EMAIL_SHA = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
META_PHONE_SHA = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"
FAST = {
    "LEADSTREAM_RETRY_BACKOFF_INITIAL": "0.05",
    "LEADSTREAM_RETRY_BACKOFF_MAX": "0.5",
    "LEADSTREAM_TIKTOK_TIMEOUT": "2",
    "LEADSTREAM_CIRCUIT_PROBE_INTERVAL": "1",
    "LEADSTREAM_DELIVERY_LINGER": "0.3",
}


@pytest.fixture(scope="module")
def meta() -> Iterator[MetaSandbox]:
    config = SandboxConfig(access_tokens=frozenset({META_TOKEN}), pixel_ids=frozenset({META_PIXEL}))
    with MetaSandbox(config) as sandbox:
        yield sandbox


@pytest.fixture
def clean(stack: LocalStack, meta: MetaSandbox) -> Iterator[tuple[LocalStack, MetaSandbox]]:
    stack.sandbox_post("/_sandbox/reset")
    stack.sandbox_post("/_sandbox/faults", {"clear": True})
    meta.reset()
    meta.configure_faults(clear=True)
    yield stack, meta
    stack.sandbox_post("/_sandbox/faults", {"clear": True})
    meta.configure_faults(clear=True)


def conversion(prefix: str, n: int) -> dict[str, Any]:
    """A qualified web lead as the core writes it (TikTok name; the CRM stage kept)."""
    now = datetime.now(tz=UTC)
    return {
        "event_id": f"{prefix}-evt-{n}:ApplicationApproval",
        "event": "ApplicationApproval",
        "event_time": now - timedelta(minutes=1),
        "lead_id": f"{prefix}-lead-{n}",
        "source_kind": "status_change",
        "source_id": f"{prefix}-chg-{n}",
        "channel": "WEB",
        "matched": True,
        "email_sha256": EMAIL_SHA,
        "phone_digits_sha256": META_PHONE_SHA,
        "ttclid": f"E.C.P.{prefix}{n}",
        "fbc": f"fb.1.1741953600123.IwAR{prefix}{n}",
        "fbp": "fb.1.1741953600123.987654321",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
        "page_url": "https://shop.example.com/quote?fbclid=x",
        "ad_consent": "GRANTED",
        "status": "qualified",
        "crm": "hubspot",
        "created_at": now,
    }


def produce(stack: LocalStack, names: Names, records: list[dict[str, Any]]) -> None:
    serde = AvroSerde.connect(stack.registry.url)
    producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 20})
    for record in records:
        value = serde.encode(names.conversions, "Conversion", record)
        producer.produce(names.conversions, key=record["lead_id"].encode(), value=value)
        producer.poll(0)
    assert producer.flush(30) == 0


def start(stack: LocalStack, names: Names, meta: MetaSandbox) -> WorkerProcess:
    worker = stack.start_worker(
        names.prefix,
        **names.env(),
        **FAST,
        LEADSTREAM_META_PIXEL_ID=META_PIXEL,
        LEADSTREAM_META_ACCESS_TOKEN=META_TOKEN,
        LEADSTREAM_META_API_URL=meta.url,
    )
    worker.wait_ready()
    return worker


def tiktok_ids(stack: LocalStack, prefix: str) -> list[str]:
    events = stack.sandbox_get("/_sandbox/events")
    return [e["event_id"] for e in events if e["event_id"].startswith(prefix)]


def meta_events(meta: MetaSandbox, prefix: str) -> list[dict[str, Any]]:
    return [e for e in meta.events() if e["event_id"].startswith(prefix)]


def receipts(stack: LocalStack, names: Names) -> list[dict[str, Any]]:
    serde = AvroSerde.connect(stack.registry.url)
    return [
        serde.decode(m.value(), "DeliveryReceipt")
        for m in stack.consume_all(names.deliveries, idle=1.0)
    ]


def test_the_same_leads_reach_both_sandboxes_each_in_its_shape(
    clean: tuple[LocalStack, MetaSandbox], names: Names
) -> None:
    stack, meta = clean
    n, prefix = 40, names.prefix
    produce(stack, names, [conversion(prefix, i) for i in range(n)])
    worker = start(stack, names, meta)
    try:
        wait_until(lambda: len(tiktok_ids(stack, prefix)) >= n, 90, "TikTok events", worker)
        wait_until(lambda: len(meta_events(meta, prefix)) >= n, 90, "Meta events", worker)
        meta_topic = f"{names.app_id}-conversions-meta"
        wait_caught_up(stack, names.app_id, [names.conversions, meta_topic], worker)
        got = receipts(stack, names)
    finally:
        worker.stop()
    tiktok = stack.sandbox_get("/_sandbox/events")
    tiktok = [e for e in tiktok if e["event_id"].startswith(prefix)]
    assert {e["event"] for e in tiktok} == {"ApplicationApproval"}
    assert tiktok[0]["user"]["ttclid"].startswith("E.C.P.")
    events = meta_events(meta, prefix)
    assert len(events) == n
    assert {e["event_name"] for e in events} == {"QualifiedLead"}
    assert {e["event_id"] for e in events} == {f"{prefix}-evt-{i}:QualifiedLead" for i in range(n)}
    assert {e["action_source"] for e in events} == {"system_generated"}
    one = events[0]["user_data"]
    assert one["em"] == [EMAIL_SHA] and one["ph"] == [META_PHONE_SHA]
    assert one["fbc"].startswith("fb.1.") and one["client_ip_address"] == "203.0.113.9"
    by_destination: dict[str, int] = {}
    for r in got:
        assert r["outcome"] == "DELIVERED"
        by_destination[r["destination"]] = by_destination.get(r["destination"], 0) + 1
    assert by_destination == {"tiktok": n, "meta": n}
    assert records_on(stack, names.dead_letter) == 0


def test_a_meta_outage_leaves_tiktok_alone_and_meta_catches_up(
    clean: tuple[LocalStack, MetaSandbox], names: Names
) -> None:
    stack, meta = clean
    n, prefix = 60, names.prefix
    meta.configure_faults(auth_error=True)
    worker = start(stack, names, meta)
    try:
        produce(stack, names, [conversion(prefix, i) for i in range(n // 2)])
        wait_until(
            lambda: (
                'leadstream_destination_circuit_open{destination="meta"} 1.0' in worker.metrics()
            ),
            60,
            "Meta's circuit to open",
            worker,
        )
        # TikTok keeps delivering while Meta is paused, including what arrives meanwhile.
        produce(stack, names, [conversion(prefix, i) for i in range(n // 2, n)])
        wait_until(lambda: len(tiktok_ids(stack, prefix)) >= n, 90, "TikTok events", worker)
        metrics = worker.metrics()
        assert (
            metric_value(metrics, "leadstream_destination_circuit_open", destination="tiktok") == 0
        )
        assert meta_events(meta, prefix) == []
        # The token is fixed but Meta now answers 5xx for a while: retried, not dead-lettered.
        meta.configure_faults(auth_error=False, transient=1.0)
        wait_until(
            lambda: meta.stats()["faults_by_kind"].get("transient", 0) >= 3,
            60,
            "Meta 5xx answers",
            worker,
        )
        meta.configure_faults(clear=True)
        wait_until(lambda: len(meta_events(meta, prefix)) >= n, 120, "Meta to catch up", worker)
        meta_topic = f"{names.app_id}-conversions-meta"
        wait_caught_up(stack, names.app_id, [names.conversions, meta_topic], worker)
        time.sleep(1)
        metrics = worker.metrics()
        got = receipts(stack, names)
    finally:
        worker.stop()
    assert metric_value(metrics, "leadstream_destination_circuit_open", destination="meta") == 0
    tiktok = tiktok_ids(stack, prefix)
    assert len(tiktok) == n and len(set(tiktok)) == n
    assert stack.sandbox_get("/_sandbox/stats", prefix=f"{prefix}-")["deduplicated"] == 0
    ids = [e["event_id"] for e in meta_events(meta, prefix)]
    assert len(ids) == n and len(set(ids)) == n
    assert meta.stats(prefix=f"{prefix}-")["deduplicated"] == 0  # nothing sent twice
    assert records_on(stack, names.dead_letter) == 0  # nothing lost
    outcomes = {(r["destination"], r["event_id"]) for r in got}
    assert len(got) == 2 * n and len(outcomes) == 2 * n
    assert {r["outcome"] for r in got} == {"DELIVERED"}


def test_from_the_input_topics_meta_gets_its_click_ids_phone_form_and_conversion_leads(
    clean: tuple[LocalStack, MetaSandbox], names: Names
) -> None:
    """Forms and status changes in: fbc from fbclid, the digits phone hash, Conversion Leads.

    Instant Form leads (``meta_lead_id``) send every stage in order, the first included: lead 2
    goes new -> qualified, lead 3 jumps straight to won and has its qualified stage filled in.
    TikTok gets only the events of its own maps.
    """
    stack, meta = clean
    prefix = names.prefix
    env = names.env()
    worker = start(stack, names, meta)
    try:
        produce_json(
            stack,
            env,
            names.form,
            form(prefix, 1, page_url="https://shop.example.com/quote?fbclid=IwAR2url1"),
            form(prefix, 2, meta_lead_id="525645896321548", fbc="fb.1.1741953600123.cookie2"),
            form(prefix, 3, meta_lead_id="525645896321549"),
        )
        produce_json(
            stack,
            env,
            names.status,
            status(prefix, 1, "c1", "qualified"),
            status(prefix, 2, "c2", "qualified"),
            status(prefix, 3, "c3", "won", value=990.0, currency="EUR"),
        )
        wait_until(lambda: len(meta_events(meta, prefix)) >= 6, 90, "Meta events", worker)
        wait_until(lambda: len(tiktok_ids(stack, prefix)) >= 3, 90, "TikTok events", worker)
    finally:
        worker.stop()
    events = meta_events(meta, prefix)
    by_id = {e["event_id"]: e for e in events}
    web = by_id[f"{prefix}-evt-1:QualifiedLead"]
    assert web["action_source"] == "system_generated"
    assert web["user_data"]["fbc"].startswith("fb.1.") and web["user_data"]["fbc"].endswith(
        ".IwAR2url1"
    )
    assert web["user_data"]["ph"] == [META_PHONE_SHA]  # 07700 900123 in GB, digits only
    leads = by_id[f"{prefix}-evt-2:QualifiedLead"]
    assert leads["user_data"]["lead_id"] == 525645896321548
    assert leads["custom_data"] == {"event_source": "crm", "lead_event_source": "hubspot"}

    def stages(n: int) -> list[str]:
        return [e["event_name"] for e in events if e["event_id"].startswith(f"{prefix}-evt-{n}:")]

    assert stages(1) == ["QualifiedLead"]  # a web lead: no Conversion Leads stages
    assert stages(2) == ["Lead", "QualifiedLead"]
    assert stages(3) == ["Lead", "QualifiedLead", "Purchase"]
    created = int((NOW - timedelta(hours=1)).timestamp())
    for n in (2, 3):
        times = [e["event_time"] for e in events if e["event_id"].startswith(f"{prefix}-evt-{n}:")]
        assert times == sorted(times) and times[0] > created
    assert meta.stats(prefix)["crm_warnings"] == 0
    assert sorted(tiktok_ids(stack, prefix)) == [
        f"{prefix}-evt-1:ApplicationApproval",
        f"{prefix}-evt-2:ApplicationApproval",
        f"{prefix}-evt-3:Purchase",
    ]
    assert records_on(stack, names.dead_letter) == 0
