"""Leadstream's own CPU per lead, with no Faust and no Kafka: the ceiling of issue 15's e2e ratio.

``python -m benchmarks.own_work --leads N --repeat R`` prints one JSON object on one line (the
harness reads it; pipe it to ``python -m json.tool`` to read it). It runs the code a worker runs
per lead, on the records the e2e benchmark produces, with everything around it taken away:

* the lead agent's batch code (``Agents._lead_batch``: decode, hashing, the pure core, the lead
  state's JSON, the conversion's Avro, the identity claims) on batches of 500 form submits, then
  500 status changes, each batch flushed as the agent's ``Finisher`` does;
* TikTok's ``Delivery.handle`` (decode, payload, ledger, receipts) on batches of 1,000
  conversions, as the conversions reader hands them over.

Not included: Faust (its consumer, streams, acks, the event loop's turns between records),
librdkafka (fetches, produce calls, delivery reports) and HTTP. The producers are replaced by one
that keeps the records in a list and acknowledges them at once, and the Events API client by one
that answers OK without sending. The figure is therefore a floor for the worker's CPU per lead,
and ``1 / figure`` a ceiling for one core's leads/s that no change to the Faust or Kafka side
can pass. It is measured with :func:`time.process_time` (CPU of this process; the registry
double's thread is idle once the schemas are cached), no broker needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from benchmarks import data
from streams.local.registry.server import RegistryServer
from streams.runtime.partitioner import partition_for
from streams.runtime.reader import Event
from streams.runtime.worker import Worker
from streams.settings import Settings
from streams.tiktok.client import TrackResponse

LEAD_BATCH = 500  # events per lead batch: a batch of the agent at saturation is 500-1,000
DELIVERY_BATCH = 1_000  # conversions per request (LEADSTREAM_DELIVERY_BATCH_MAX's default)


class _Message:
    """What the lead agent and Delivery read of a Kafka message."""

    __slots__ = ("headers", "key", "offset", "partition", "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value = key, value
        self.headers: list[tuple[str, bytes]] = []


class _Producer:
    """Keeps what is produced; every record is acknowledged at the next ``poll``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self._reports: list[Callable[[Any, Any], None]] = []

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes | None = None,
        on_delivery: Callable[[Any, Any], None] | None = None,
        **_: Any,
    ) -> None:
        self.records.append((topic, key, value))
        if on_delivery is not None:
            self._reports.append(on_delivery)

    def poll(self, timeout: float) -> int:  # noqa: ARG002 - librdkafka's signature
        reports, self._reports = self._reports, []
        for report in reports:
            report(None, None)
        return len(reports)


class _AcceptingClient:
    """The Events API client's ``track``, answering OK without a request."""

    name = "tiktok"

    def __init__(self) -> None:
        self.requests = 0

    def track(self, request: Any) -> TrackResponse:  # noqa: ARG002 - the client's signature
        self.requests += 1
        return TrackResponse(200, 0, "OK", f"own-{self.requests}")


def _events(topic: str, records: Sequence[data.KeyValue], partitions: int) -> list[Event]:
    return [
        Event(_Message(topic, partition_for(key, partitions), offset, key, value))  # type: ignore[arg-type]
        for offset, (key, value) in enumerate(records)
    ]


async def _one_run(registry_url: str, leads: int) -> dict[str, float]:
    """CPU microseconds per lead for each stage of one fresh worker."""
    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",  # never contacted: no consumer or producer starts
        schema_registry_url=registry_url,
        store="memory://",
        tiktok_pixel_code="CPIXEL0001",
        tiktok_access_token=SecretStr("own-work"),
    )
    client = _AcceptingClient()
    worker = Worker(settings, client=client)  # type: ignore[arg-type]
    worker.app.finalize()
    producer = _Producer()
    agents = worker.agents
    for outputs in (
        worker.outputs,
        agents.booking_outputs,
        agents.identity_outputs,
        worker.delivery.outputs,
    ):
        outputs.producer = producer
    encoder = data.Encoder(registry_url)
    now = datetime.now(tz=UTC).replace(microsecond=0)
    parts = settings.topic_partitions
    forms = _events(
        settings.topic_form_submitted,
        encoder.forms(settings.topic_form_submitted, "own", range(leads), now),
        parts,
    )
    statuses = _events(
        settings.topic_lead_status_changed,
        encoder.statuses(settings.topic_lead_status_changed, "own", range(leads), now),
        parts,
    )
    per_lead: dict[str, float] = {}
    for stage, events in (("form_us", forms), ("status_change_us", statuses)):
        started = time.process_time()
        for at in range(0, leads, LEAD_BATCH):
            await agents._lead_batch(events[at : at + LEAD_BATCH])  # noqa: SLF001
            await worker.outputs.flush()
        per_lead[stage] = (time.process_time() - started) / leads * 1e6
    conversions = [
        (key or b"", value)
        for topic, key, value in producer.records
        if topic == settings.topic_conversions and value is not None
    ]
    if len(conversions) != leads:
        msg = f"{len(conversions)} conversions for {leads} leads"
        raise RuntimeError(msg)
    events = _events(settings.topic_conversions, conversions, parts)
    started = time.process_time()
    for at in range(0, leads, DELIVERY_BATCH):
        await worker.delivery.handle(events[at : at + DELIVERY_BATCH])
    per_lead["delivery_us"] = (time.process_time() - started) / leads * 1e6
    if client.requests != -(-leads // DELIVERY_BATCH):
        msg = f"{client.requests} requests for {leads} conversions"
        raise RuntimeError(msg)
    per_lead["total_us"] = sum(per_lead.values())
    return per_lead


def measure(leads: int, repeat: int) -> dict[str, Any]:
    """Run ``repeat`` fresh workers on ``leads`` leads each; medians and the runs."""
    registry = RegistryServer()
    registry.start()
    try:
        runs = [asyncio.run(_one_run(registry.url, leads)) for _ in range(repeat)]
    finally:
        registry.stop()
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {
        "leads": leads,
        "runs": runs,
        **medians,
        "ceiling_leads_per_core_s": 1e6 / medians["total_us"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the measurement as one JSON object, on one line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.own_work", description=__doc__)
    parser.add_argument("--leads", type=int, default=10_000, help="leads per run (10,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each a fresh worker (3)")
    args = parser.parse_args(argv)
    if args.leads < 1 or args.repeat < 1:
        parser.error("--leads and --repeat must be at least 1")
    print(json.dumps(measure(args.leads, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
