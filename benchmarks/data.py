"""Input records for the benchmarks: realistic form submits and status changes, pre-encoded once.

Each lead ``n`` gets one ``FormSubmitted`` (full click context: ttclid, _ttp, IP, user agent,
page, granted consent, email and phone) and one ``LeadStatusChanged`` to ``qualified``, which
Leadstream turns into one ``ApplicationApproval`` conversion (web route), event id
``<form event_id>:ApplicationApproval``.
Values are Avro in the Confluent wire format, encoded once per record with the topic's registered
schema; the backlog is produced with a batching librdkafka producer and Faust's partitioner
(murmur2_random), so a lead's form and status change land in the same partition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer

from benchmarks.common import BenchError, Names
from streams.ops.produce import producer_config
from streams.runtime.admin import ensure_topics
from streams.serde.avro import AvroSerde

KeyValue = tuple[bytes, bytes]

QUALIFIED = "qualified"
"""A status in the default stage map's qualified set: becomes ``ApplicationApproval``."""


def lead_id(prefix: str, n: int) -> str:
    """The lead id of lead ``n`` of a run."""
    return f"{prefix}-lead-{n:07d}"


def form_event_id(prefix: str, n: int) -> str:
    """The form submit's event id of lead ``n`` (its conversion: ``<this>:ApplicationApproval``)."""
    return f"{prefix}-evt-{n:07d}"


def conversion_event_id(prefix: str, n: int) -> str:
    """The event id the sandbox records for lead ``n``'s qualified-lead conversion."""
    return f"{form_event_id(prefix, n)}:ApplicationApproval"


def form_record(prefix: str, n: int, now: datetime) -> dict[str, Any]:
    """A typical website form submit with full click context and consent granted."""
    return {
        "event_id": form_event_id(prefix, n),
        "lead_id": lead_id(prefix, n),
        "occurred_at": now - timedelta(hours=1),
        "page_url": f"https://shop.example.com/quote?utm_source=tiktok&utm_campaign=c{n % 97}",
        "form_id": "quote-form-v3",
        "referrer_url": "https://www.tiktok.com/",
        "ttclid": f"E.C.P.v3bench{prefix}click{n:07d}",
        "ttp": f"ttp-{n:07d}-{prefix}",
        "tiktok_lead_id": None,
        "email": f"lead{n}.{prefix}@example.com",
        "phone": f"07700 {900000 + n % 100000:06d}",
        "external_id": None,
        "ip": f"203.0.{n // 256 % 256}.{n % 256}",
        "user_agent": (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
        ),
        "country": "GB",
        "ad_consent": "GRANTED",
        "limited_data_use": False,
    }


def status_record(
    prefix: str, n: int, changed_at: datetime, stage: str = QUALIFIED
) -> dict[str, Any]:
    """A CRM status change of lead ``n`` to ``stage``."""
    return {
        "change_id": f"{prefix}-chg-{n:07d}",
        "lead_id": lead_id(prefix, n),
        "status": stage,
        "changed_at": changed_at,
        "crm": "hubspot",
        "previous_status": "new",
        "value": None,
        "currency": None,
        "order_id": None,
        "email": None,
        "phone": None,
    }


class Encoder:
    """Encodes records once, with the schema registered under each topic's ``-value`` subject."""

    def __init__(self, registry_url: str) -> None:
        """Connect to the registry double (schemas are registered on first use per topic)."""
        self.serde = AvroSerde.connect(registry_url)

    def forms(self, topic: str, prefix: str, leads: Iterable[int], now: datetime) -> list[KeyValue]:
        """Encode the form submits of ``leads`` for ``topic``."""
        encode = self.serde.encode
        return [
            (
                lead_id(prefix, n).encode(),
                encode(topic, "FormSubmitted", form_record(prefix, n, now)),
            )
            for n in leads
        ]

    def statuses(
        self, topic: str, prefix: str, leads: Iterable[int], now: datetime
    ) -> list[KeyValue]:
        """Encode a ``qualified`` status change of each of ``leads`` for ``topic``."""
        encode = self.serde.encode
        changed_at = now - timedelta(minutes=5)
        return [
            (
                lead_id(prefix, n).encode(),
                encode(topic, "LeadStatusChanged", status_record(prefix, n, changed_at)),
            )
            for n in leads
        ]

    def status(self, topic: str, prefix: str, n: int, changed_at: datetime) -> KeyValue:
        """Encode one status change (the latency run encodes as it produces)."""
        value = self.serde.encode(topic, "LeadStatusChanged", status_record(prefix, n, changed_at))
        return lead_id(prefix, n).encode(), value


def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    """Create input topics up front, with the partition count the worker expects."""
    ensure_topics(bootstrap, names, partitions=partitions)


def fast_producer(bootstrap: str, linger_ms: int = 20) -> Producer:
    """A backlog producer: Leadstream's config (idempotent, acks=all, murmur2_random), batched."""
    config = producer_config(bootstrap)
    config.update(
        {
            "linger.ms": linger_ms,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    return Producer(config)


def produce_backlog(bootstrap: str, batches: Sequence[tuple[str, Sequence[KeyValue]]]) -> float:
    """Produce every (topic, records) pair in order, wait for all acks; return the seconds taken."""
    producer = fast_producer(bootstrap)
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.perf_counter()
    for topic, records in batches:
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)  # local queue full: let deliveries drain
            producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    if remaining or failures:
        msg = f"backlog: {remaining} records unacknowledged, {len(failures)} failed {failures[:1]}"
        raise BenchError(msg)
    return elapsed


def now_utc() -> datetime:
    """The wall clock, timezone-aware."""
    return datetime.now(tz=UTC)


def backlog(
    encoder: Encoder, names: Names, leads: int, now: datetime
) -> tuple[list[KeyValue], list[KeyValue]]:
    """Encode ``leads`` form submits and as many qualified status changes for ``names``."""
    forms = encoder.forms(names.form, names.prefix, range(leads), now)
    statuses = encoder.statuses(names.status, names.prefix, range(leads), now)
    return forms, statuses
