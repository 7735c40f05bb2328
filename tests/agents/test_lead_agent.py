"""The Faust wiring: the ``leads`` agent through Faust's ``agent.test_context()``, and delivery.

The worker is built as in production (``streams.runtime.worker.Worker``) with the ``memory://``
store, a broker that is never contacted and a fake Events API client. Records are real Avro,
framed with ids from the registry double. The worker's producer is replaced by a recorder, so what
the agents produce is captured instead of sent.

One shim: ``AgentTestWrapper.put`` names its message after the agent's channel, and the ``leads``
channel subscribes to four topics, which Faust cannot name (``Topic.get_topic_name`` raises and
the message gets the topic ``"<internal>"``; the agent then fails with ``KeyError: '<internal>'``).
:func:`put` sets the wrapper's ``original_channel`` to the one topic the record comes from.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faust.types import EventT, TopicT
from pydantic import SecretStr

from streams.domain import identity as matching
from streams.domain import records
from streams.local.registry.server import RegistryServer
from streams.runtime.partitioner import partition_for
from streams.runtime.reader import Event, Message
from streams.runtime.worker import Worker
from streams.serde.avro import AvroSerde
from streams.settings import Settings
from streams.tiktok.client import TrackResponse
from tests.unit.factories import (
    EMAIL_SHA,
    FORM_EVENT_ID,
    LEAD_ID,
    PAGE_URL,
    PHONE_SHA,
    make_booking_record,
    make_conversion,
    make_form_record,
    make_status_record,
)
from tests.unit.runtime.producers import NoFlush

PIXEL = "CPIXEL0001"
KEY = LEAD_ID.encode()


@dataclass
class FakeClient:
    """Records each request and answers OK."""

    payloads: list[dict[str, Any]] = field(default_factory=list)
    name: str = "tiktok"

    def track(self, request: Mapping[str, Any]) -> TrackResponse:
        self.payloads.append(copy.deepcopy(dict(request)))
        return TrackResponse(200, 0, "OK", f"req-{len(self.payloads)}")


class RecordingProducer(NoFlush):
    """Stands in for the worker's librdkafka producer: records every produce, acks at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self.partitions: list[int | None] = []  # the partition asked for, per record
        self.reports: list[Any] = []  # delivery callbacks, called (acknowledged) by poll

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes | None,
        on_delivery: Any = None,
        partition: int | None = None,
        **_: Any,
    ) -> None:
        self.records.append((topic, key, value))
        self.partitions.append(partition)
        if on_delivery is not None:
            self.reports.append(on_delivery)

    def poll(self, timeout: float) -> int:
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, None)
        return len(reports)


@dataclass
class Built:
    """A worker whose outputs are recorded instead of produced."""

    worker: Worker
    client: FakeClient
    serde: AvroSerde
    producer: RecordingProducer

    def sends(self, topic: str) -> list[tuple[bytes | None, bytes]]:
        name = getattr(self.worker.topics, topic).get_topic_name()
        return [(k, v) for t, k, v in self.producer.records if t == name and v is not None]

    def placed(self, topic: str) -> list[tuple[int | None, bytes | None, bytes | None]]:
        name = getattr(self.worker.topics, topic).get_topic_name()
        return [
            (p, k, v)
            for (t, k, v), p in zip(self.producer.records, self.producer.partitions, strict=True)
            if t == name
        ]

    def decoded(self, topic: str, record: str) -> list[dict[str, Any]]:
        return [self.serde.decode(value, record) for _, value in self.sends(topic)]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.worker.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
async def built(registry: RegistryServer, serde: AvroSerde) -> Built:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",  # never contacted: no consumer or producer is started
        schema_registry_url=registry.url,
        store="memory://",
        tiktok_pixel_code=PIXEL,
        tiktok_access_token=SecretStr("test-token"),
        delivery_linger=0.05,
    )
    client = FakeClient()
    worker = Worker(settings, client=client)
    app = worker.app
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    producer = RecordingProducer()
    agents = worker.agents
    for outputs in (
        worker.outputs,
        agents.booking_outputs,
        agents.identity_outputs,
        worker.delivery.outputs,
    ):
        outputs.producer = producer  # every agent's own Outputs
    return Built(worker, client, serde, producer)


@pytest.fixture
async def leads(built: Built) -> AsyncIterator[Any]:
    async with built.worker.app.agents["leads"].test_context() as agent:
        yield agent


async def put(agent: Any, topic: TopicT, value: bytes, key: bytes = KEY) -> EventT:
    """Put one record on ``topic`` through the test wrapper and wait until it is processed."""
    agent.original_channel = topic  # see the module docstring
    event = await asyncio.wait_for(agent.put(key=key, value=value), 5)
    # put() returns once the event is in the agent's take_events buffer; the batch is processed
    # when the agent takes it (LEADSTREAM_AGENT_BATCH_WITHIN: at once by default), and
    # acknowledged only after its outputs were flushed: wait for that acknowledgement.
    await wait_for(lambda: event.message.acked)
    return event  # type: ignore[no-any-return]


def now() -> datetime:
    # The agents read the wall clock (pipeline.utcnow), so inputs are dated relative to it.
    return datetime.now(tz=UTC).replace(microsecond=0)


def form_bytes(b: Built, **overrides: Any) -> bytes:
    record = make_form_record(occurred_at=now() - timedelta(hours=2), **overrides)
    return b.serde.encode(b.worker.settings.topic_form_submitted, "FormSubmitted", record)


def status_bytes(b: Built, **overrides: Any) -> bytes:
    record = make_status_record(changed_at=now() - timedelta(minutes=5), **overrides)
    return b.serde.encode(b.worker.settings.topic_lead_status_changed, "LeadStatusChanged", record)


# --- leads --------------------------------------------------------------------------------------


async def test_form_then_qualified_status_emits_one_conversion(built: Built, leads: Any) -> None:
    topics = built.worker.topics
    await put(leads, topics.form, form_bytes(built))
    assert built.sends("conversions") == []
    # The form's two claims, each in the partition where a booking looked up by it arrives.
    claims = {
        (key, lead, partition)
        for partition, rkey, value in built.placed("identity")
        for key, lead in matching.decode_claims((rkey or b"").decode(), value)
    }
    parts = built.worker.settings.topic_partitions
    assert claims == {
        (k, LEAD_ID, partition_for(k.encode(), parts)) for k in (f"e:{EMAIL_SHA}", f"p:{PHONE_SHA}")
    }
    assert {k for _, k, _ in built.placed("identity")} == {b"claims"}

    await put(leads, topics.status, status_bytes(built))

    [(key, _)] = built.sends("conversions")
    assert key == KEY
    [conv] = built.decoded("conversions", "Conversion")
    assert conv["event_id"] == f"{FORM_EVENT_ID}:ApplicationApproval"
    assert conv["event"] == "ApplicationApproval"
    assert conv["lead_id"] == LEAD_ID
    assert conv["channel"] == "WEB"
    assert conv["source_kind"] == "status_change"
    assert conv["source_id"] == "c-1"
    assert conv["page_url"] == PAGE_URL
    assert conv["email_sha256"] == EMAIL_SHA
    assert built.sends("dead_letter") == []
    assert KEY in built.worker.tables.leads
    assert built.sample("leadstream_conversions_built_total", event="ApplicationApproval") == 1
    assert built.sample("leadstream_events_in_total", topic=topics.status.get_topic_name()) == 1


async def test_redelivered_status_change_emits_no_second_conversion(
    built: Built, leads: Any
) -> None:
    topics = built.worker.topics
    status = status_bytes(built)
    await put(leads, topics.form, form_bytes(built))
    first = await put(leads, topics.status, status)
    again = await put(leads, topics.status, status)

    assert again.message.offset == first.message.offset + 1  # a second copy, not the same event
    assert len(built.sends("conversions")) == 1
    assert built.sample("leadstream_core_outcomes_total", outcome="duplicate_input") == 1
    assert built.sends("dead_letter") == []


async def test_status_before_its_form_waits_and_is_released_by_the_form(
    built: Built, leads: Any
) -> None:
    topics = built.worker.topics
    await put(leads, topics.status, status_bytes(built))
    assert built.sends("conversions") == []
    assert built.sample("leadstream_core_outcomes_total", outcome="waiting_for_form") == 1

    await put(leads, topics.form, form_bytes(built))

    [conv] = built.decoded("conversions", "Conversion")
    assert conv["event_id"] == f"{FORM_EVENT_ID}:ApplicationApproval"
    assert conv["page_url"] == PAGE_URL


async def test_undecodable_bytes_are_dead_lettered_and_the_agent_keeps_going(
    built: Built, leads: Any
) -> None:
    topics = built.worker.topics
    event = await put(leads, topics.status, b"junk", key=b"lead-junk")

    [(key, _)] = built.sends("dead_letter")
    assert key == b"lead-junk"
    [dead] = built.decoded("dead_letter", "DeadLetter")
    assert dead["reason"] == "undecodable"
    assert dead["original"] == b"junk"
    assert dead["source_topic"] == topics.status.get_topic_name()
    assert dead["source_offset"] == event.message.offset
    assert dead["source_key"] == b"lead-junk"
    assert built.sample("leadstream_dead_letters_total", reason="undecodable") == 1

    # The worker never stops on bad input: the next records are processed as usual.
    await put(leads, topics.form, form_bytes(built))
    await put(leads, topics.status, status_bytes(built))
    assert len(built.sends("conversions")) == 1


async def test_invalid_form_is_dead_lettered_without_raw_pii(built: Built, leads: Any) -> None:
    topics = built.worker.topics
    await put(leads, topics.form, form_bytes(built, page_url=""))

    [dead] = built.decoded("dead_letter", "DeadLetter")
    assert dead["reason"] == "missing_field"
    assert dead["field"] == "page_url"
    assert b"Jane.Doe@Example.com" not in dead["original"]
    assert built.sends("conversions") == []
    assert KEY not in built.worker.tables.leads


# --- deliver ------------------------------------------------------------------------------------


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


class FakeKafkaMessage:
    """The librdkafka message the conversions reader wraps (only what it reads)."""

    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self._topic, self._offset, self._value = topic, offset, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return KEY

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


async def test_the_reader_s_records_are_delivered_and_recorded_in_the_ledger(built: Built) -> None:
    """The conversions reader hands Delivery its own events: sent, receipts, ledger, dedup."""
    settings = built.worker.settings
    convs = [
        make_conversion(event_id=f"evt-{n}:QualifiedLead", event_time=now(), created_at=now())
        for n in range(2)
    ]
    values = [
        built.serde.encode(
            settings.topic_conversions, "Conversion", records.conversion_to_record(c)
        )
        for c in convs
    ]

    def events(*pairs: tuple[int, bytes]) -> list[Any]:
        topic = settings.topic_conversions
        return [Event(Message(FakeKafkaMessage(topic, o, v))) for o, v in pairs]

    await built.worker.delivery.handle(events((0, values[0]), (1, values[1])))
    # The same conversion again, in a later batch: the delivered table stops it.
    await built.worker.delivery.handle(events((2, values[0])))

    sent = [[e["event_id"] for e in p["data"]] for p in built.client.payloads]
    assert sent == [["evt-0:QualifiedLead", "evt-1:QualifiedLead"]]
    receipts = built.decoded("deliveries", "DeliveryReceipt")
    assert [(r["event_id"], r["outcome"]) for r in receipts] == [
        ("evt-0:QualifiedLead", "DELIVERED"),
        ("evt-1:QualifiedLead", "DELIVERED"),
    ]
    assert sorted(built.worker.tables.delivered) == [
        b"evt-0:QualifiedLead",
        b"evt-1:QualifiedLead",
    ]
    assert built.sample("leadstream_core_outcomes_total", outcome="duplicate_delivery") == 1


async def test_tiktok_delivery_is_no_faust_agent(built: Built) -> None:
    """Faust hands the lead agent its inputs; the conversions are read outside it."""
    assert "deliver" not in built.worker.app.agents
    assert built.worker.reader.delivery is built.worker.delivery


# --- identity -----------------------------------------------------------------------------------


async def test_identity_index_reads_claims_of_both_formats_and_first_claim_wins(
    built: Built,
) -> None:
    topics = built.worker.topics
    email, phone = f"e:{EMAIL_SHA}", f"p:{PHONE_SHA}"
    booking = make_booking_record(lead_id=None, occurred_at=now() - timedelta(minutes=1))
    booking_bytes = built.serde.encode(
        built.worker.settings.topic_booking_created, "BookingCreated", booking
    )
    async with built.worker.app.agents["identity"].test_context() as agent:
        # One claim per record (written before claims were batched), then a batch of claims
        # that tries to take the same email for another lead: the first claim keeps it.
        await put(agent, topics.identity, b"lead-old", key=email.encode())
        batch = matching.encode_claims([(email, "lead-other"), (phone, "lead-new")])
        await put(agent, topics.identity, batch, key=b"claims")
        await put(agent, topics.identity, b"not json", key=b"claims")  # logged and skipped
        await put(agent, topics.bookings_by_identity, booking_bytes, key=email.encode())

    table = built.worker.tables.identity
    assert table[email.encode()] == b"lead-old"
    assert table[phone.encode()] == b"lead-new"
    assert b"claims" not in table
    [routed] = built.decoded("bookings_by_lead", "BookingCreated")
    assert routed["lead_id"] == "lead-old"
