"""Faust agents: decode, call the pure core, apply its decision, send. Nothing else lives here.

* ``leads`` — form submits, status changes, bookings (re-keyed by lead) and expiry ticks, all
  keyed by ``lead_id``: keeps the lead table and emits conversions.
* ``route_bookings`` — validates bookings and re-keys them by lead, or by hashed email/phone when
  the booking system did not know the lead.
* ``identity`` — the hashed email/phone -> lead_id index, co-partitioned with the bookings to match.
  The lead agent writes a batch's claims as one record per index partition (not one per key), in
  the partition Kafka's partitioner gives each key: where a booking looked up by it arrives.
* TikTok's delivery reads the conversions outside Faust (``streams.runtime.reader``); with Meta
  configured, ``fanout_meta`` copies them to Meta's topic and ``deliver_meta`` batches those.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import faust
from faust.types import TP, EventT, StreamT

from streams.domain import identity as matching
from streams.domain import lead as core
from streams.domain import state_json
from streams.domain.due import DueIndex, next_due
from streams.domain.types import Booking, FormSubmit, LeadState, StatusChange
from streams.runtime.delivery import Delivery
from streams.runtime.faust_repairs import Consumer
from streams.runtime.metrics import Metrics
from streams.runtime.outputs import Finisher, Outputs, in_event
from streams.runtime.partitioner import partition_for
from streams.runtime.tables import Tables
from streams.runtime.topics import Topics
from streams.serde import contract
from streams.serde import pipeline as pl
from streams.settings import Settings

logger = logging.getLogger(__name__)

SYNTHETIC_LEAD_PREFIX = "booking:"
CLAIMS_PER_RECORD = 2000  # ~200 KB a record, well under Kafka's default 1 MB message size


def _raw(event: EventT) -> pl.Raw:
    msg = event.message
    redrive = pl.is_redrive(msg.headers)
    return pl.Raw(msg.topic, msg.partition, msg.offset, msg.key, msg.value, redrive)


class Agents:
    """Registers the agents on ``app`` and holds what they share."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        topics: Topics,
        tables: Tables,
        pipeline: pl.Pipeline,
        delivery: Delivery,
        metrics: Metrics,
        outputs: Outputs,
        due: DueIndex,
        meta_delivery: Delivery | None = None,
    ) -> None:
        """Wire the agents; Faust starts them with the worker (Meta's only when configured)."""
        self.app = app
        self.settings = settings
        self.rules = settings.rules()
        self.topics = topics
        self.tables = tables
        self.pipeline = pipeline
        self.delivery = delivery
        self.metrics = metrics
        # Each agent waits for exactly its own outputs (runtime/outputs.py): one Outputs per agent.
        self.outputs = outputs  # the lead agent's
        self.booking_outputs = outputs.sibling()
        self.identity_outputs = outputs.sibling()
        self.due = due
        self._in_counters: dict[str, Any] = {}
        # The leads agent's topics (Topics.lead_inputs) and the record each carries.
        self._record_for_topic = {
            contract.FORM_SUBMITTED.topic(settings): contract.FORM_SUBMITTED.name,
            contract.LEAD_STATUS_CHANGED.topic(settings): contract.LEAD_STATUS_CHANGED.name,
            topics.bookings_by_lead.get_topic_name(): contract.BOOKING_CREATED.name,
        }
        self._ticks = topics.ticks.get_topic_name()
        self._claims: dict[int, list[matching.Claim]] = {}  # index partition -> this batch's claims
        app.agent(topics.lead_inputs, name="leads")(self.leads)
        app.agent(topics.booking, name="route_bookings")(self.route_bookings)
        app.agent(
            channel=app.topic(
                topics.identity.get_topic_name(),
                topics.bookings_by_identity.get_topic_name(),
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
            ),
            name="identity",
        )(self.identity)
        # What feeds each delivery's topic on this worker: its part-full batch waits for more
        # lingers while these hold the records to fill it (Stream.take_events' backlog).
        self._upstream = frozenset(topics.lead_inputs.topics)
        self._meta_upstream = self._upstream | {topics.conversions.get_topic_name()}
        self.meta_delivery = meta_delivery
        self.fanout_outputs = outputs.sibling()
        if meta_delivery is not None and topics.meta_conversions is not None:
            app.agent(topics.conversions, name="fanout_meta")(self.fanout_meta)
            app.agent(topics.meta_conversions, name="deliver_meta")(self.deliver_meta)
        app.timer(settings.expiry_interval, on_leader=True)(self.send_ticks)

    # -- leads ---------------------------------------------------------------------------------

    async def leads(self, stream: StreamT) -> None:
        """Apply each lead-keyed input to its lead's state, a batch at a time.

        A batch is made durable and acknowledged by :class:`Finisher` while the next one is
        worked on (its outputs, then the changelog writes that record them).
        """
        finisher = Finisher(stream, self.outputs)
        try:
            # take_events is on faust's Stream, not on the StreamT protocol it is typed with.
            async for events in stream.take_events(  # type: ignore[attr-defined]
                self.settings.agent_batch_max,
                within=self.settings.agent_batch_within,
                acks=False,
            ):
                await self._lead_batch(events)
                await finisher.done(events)
        finally:
            await finisher.close()

    async def _lead_batch(self, events: list[EventT]) -> None:
        """Queue one batch's outputs and table changes (durable once the Finisher is done)."""
        self._claims = {}
        for event in events:
            in_event(event)
            raw = _raw(event)
            now = pl.utcnow()
            if raw.topic == self._ticks:
                self._expire_due(raw.partition, now)
                continue
            self._events_in(raw.topic)
            item = await self._decode(raw, self._record_for_topic[raw.topic], now)
            if isinstance(item, pl.DeadLetterOut):
                self.outputs.send_dead(item, raw.partition)
                continue
            self._apply_input(raw, item, now)
        self._send_claims()

    def _events_in(self, topic: str) -> None:
        counter = self._in_counters.get(topic)
        if counter is None:
            counter = self._in_counters[topic] = self.metrics.events_in.labels(topic)
        counter.inc()

    async def _decode(self, raw: pl.Raw, record: str, now: datetime) -> pl.Input | pl.DeadLetterOut:
        return await pl.while_registry_down(
            lambda: self.pipeline.decode(raw, record, now), f"decoding {raw.topic}"
        )

    def _apply_input(self, raw: pl.Raw, item: pl.Input, now: datetime) -> None:
        lead_id = item.lead_id or ""
        state = self._load(lead_id)
        if raw.redrive:
            state = core.forget_input(state, item)
        if isinstance(item, FormSubmit):
            outcome = core.on_form(state, item, self.rules, now)
            if state is None or state.context is None:
                self._index_identity(item)
        elif isinstance(item, StatusChange):
            outcome = core.on_status_change(state, item, raw.source, self.rules, now)
        else:
            outcome = core.on_booking(state, item, raw.source, self.rules, now)
        self._apply(lead_id, raw, outcome, now)

    def _expire_due(self, partition: int, now: datetime) -> None:
        for lead_id in self.due.pop_due(partition, now):
            state = self._load(lead_id)
            if state is None:
                continue
            raw = pl.Raw(self._ticks, partition, -1, lead_id.encode(), None)
            self._apply(lead_id, raw, core.expire(state, self.rules, now), now)

    def _load(self, lead_id: str) -> LeadState | None:
        data = self.tables.leads.data.get(lead_id.encode())
        return state_json.lead_state_from_json(data) if data else None

    def _apply(self, lead_id: str, raw: pl.Raw, outcome: core.Outcome, now: datetime) -> None:
        key = lead_id.encode()
        partition = raw.partition
        if outcome.state is None:
            self.outputs.table_del(self.tables.leads, key, partition)
            self.due.discard(partition, lead_id)
        else:
            value = state_json.lead_state_to_json(outcome.state)
            self.outputs.table_set(self.tables.leads, key, value, partition)
            self.due.schedule(partition, lead_id, next_due(outcome.state, self.rules, now))
        for conv in outcome.conversions:
            value = self.pipeline.encode_conversion(self.settings.topic_conversions, conv)
            self.outputs.send(self.settings.topic_conversions, key, value)
            self.metrics.conversions.labels(conv.event).inc()
        for dead in outcome.dead:
            src = dead.source
            origin = pl.Raw(src.topic, src.partition, src.offset, key, None) if src else raw
            out = self.pipeline.dead_letter(
                origin,
                dead.rejection.reason,
                dead.rejection.message,
                dead.rejection.field,
                self.pipeline.encode_input(dead.item),
                now,
            )
            self.outputs.send_dead(out, partition)
        self.metrics.count_core(outcome.counts)

    def _index_identity(self, form: FormSubmit) -> None:
        partitions = self.settings.topic_partitions
        for key in matching.index_keys(form):
            claims = self._claims.setdefault(partition_for(key.encode(), partitions), [])
            claims.append((key, form.lead_id))

    def _send_claims(self) -> None:
        """Queue the batch's identity claims: one record per index partition, in claim order."""
        topic = self.topics.identity.get_topic_name()
        claims, self._claims = self._claims, {}
        for partition, pairs in sorted(claims.items()):
            for start in range(0, len(pairs), CLAIMS_PER_RECORD):
                value = matching.encode_claims(pairs[start : start + CLAIMS_PER_RECORD])
                self.outputs.send(topic, matching.CLAIMS_KEY.encode(), value, partition)

    async def send_ticks(self) -> None:
        """Ask every partition of the lead agent to expire what is due (leader only)."""
        value = str(int(pl.utcnow().timestamp() * 1000)).encode()
        for partition in range(self.settings.topic_partitions):
            await self.topics.ticks.send(key=b"tick", value=value, partition=partition)

    async def on_lead_changelog(self, event: EventT) -> None:
        """Rebuild the expiry index while the lead table recovers from its changelog."""
        msg = event.message
        lead_id = bytes(msg.key or b"").decode("utf-8", "replace")
        if msg.value is None:
            self.due.discard(msg.partition, lead_id)
            return
        state = state_json.lead_state_from_json(msg.value)
        now = pl.utcnow()
        self.due.schedule(msg.partition, lead_id, next_due(state, self.rules, now))

    # -- bookings --------------------------------------------------------------------------------

    async def route_bookings(self, stream: StreamT) -> None:
        """Re-key each valid booking by lead_id, or by hashed email/phone to be matched."""
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.agent_batch_max, within=self.settings.agent_batch_within
        ):
            for event in events:
                in_event(event)
                raw = _raw(event)
                self._events_in(raw.topic)
                item = await self._decode(raw, "BookingCreated", pl.utcnow())
                if isinstance(item, pl.DeadLetterOut):
                    self.booking_outputs.send_dead(item, raw.partition)
                    continue
                assert isinstance(item, Booking)  # noqa: S101 - the decoder's contract
                self._route_booking(self.booking_outputs, item, redrive=raw.redrive)
            await self.booking_outputs.flush()

    def _route_booking(
        self, outputs: Outputs, booking: Booking, tried: str | None = None, redrive: bool = False
    ) -> None:
        headers = [(pl.REDRIVE_HEADER, b"1")] if redrive else None
        if booking.lead_id:
            outputs.send(
                self.topics.bookings_by_lead.get_topic_name(),
                booking.lead_id.encode(),
                self.pipeline.encode_input(booking),
                headers=headers,
            )
            return
        lookup = matching.next_lookup(booking, tried)
        if lookup is not None:
            outputs.send(
                self.topics.bookings_by_identity.get_topic_name(),
                lookup.encode(),
                self.pipeline.encode_input(booking),
                headers=headers,
            )
            return
        # No lead found by any key: it waits, and is sent with its own keys, under its own id.
        synthetic = dataclasses.replace(booking, lead_id=SYNTHETIC_LEAD_PREFIX + booking.booking_id)
        self.metrics.core.labels("booking_unmatched_identity").inc()
        self._route_booking(outputs, synthetic, redrive=redrive)

    async def identity(self, stream: StreamT) -> None:
        """Keep the hash -> lead index and resolve bookings that came without a lead_id."""
        index_topic = self.topics.identity.get_topic_name()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.agent_batch_max, within=self.settings.agent_batch_within
        ):
            for event in events:
                in_event(event)
                raw = _raw(event)
                key = raw.key or b""
                if raw.topic == index_topic:
                    self._claim(raw)
                    continue
                item = await self._decode(raw, "BookingCreated", pl.utcnow())
                if isinstance(item, pl.DeadLetterOut):
                    self.identity_outputs.send_dead(item, raw.partition)
                    continue
                assert isinstance(item, Booking)  # noqa: S101
                lead = self.tables.identity.data.get(key)
                if lead:
                    self.metrics.core.labels("booking_matched_" + key[:1].decode()).inc()
                    matched = dataclasses.replace(item, lead_id=lead.decode())
                    self._route_booking(self.identity_outputs, matched, redrive=raw.redrive)
                else:
                    self._route_booking(
                        self.identity_outputs, item, tried=key.decode(), redrive=raw.redrive
                    )
            await self.identity_outputs.flush()

    def _claim(self, raw: pl.Raw) -> None:
        """Record the claims of one index record; the first lead to claim a key keeps it."""
        try:
            claims = matching.decode_claims((raw.key or b"").decode(), raw.value)
        except ValueError as exc:
            logger.error(  # only Leadstream writes this topic: a bug, not bad input
                "identity index record %s[%d]@%d skipped: %s",
                raw.topic,
                raw.partition,
                raw.offset,
                exc,
            )
            return
        data = self.tables.identity.data
        for key, lead_id in claims:
            if data.get(key.encode()) is None:
                self.identity_outputs.table_set(
                    self.tables.identity, key.encode(), lead_id.encode(), raw.partition
                )

    # -- delivery --------------------------------------------------------------------------------

    def inputs_waiting(self) -> int:
        """Count the records waiting on this worker's partitions of the lead agent's inputs."""
        return self._waiting({}, self._upstream)

    async def fanout_meta(self, stream: StreamT) -> None:
        """Copy each conversion to Meta's own topic (acknowledged once the copy is durable).

        Meta's delivery reads that topic, so its circuit or retries pause only its partitions:
        a Faust stream whose buffer fills pauses the partitions it reads, for every agent.
        """
        assert self.topics.meta_conversions is not None  # noqa: S101 - registered only then
        name = self.topics.meta_conversions.get_topic_name()
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.delivery_batch_max, within=self.settings.delivery_linger
        ):
            for event in events:
                self.fanout_outputs.send(name, event.message.key, event.message.value)
            await self.fanout_outputs.flush()

    async def deliver_meta(self, stream: StreamT) -> None:
        """Send Meta's copy of the conversions in batches, acknowledged once they are durable."""
        assert self.meta_delivery is not None  # noqa: S101 - registered only then
        await self._deliver(stream, self.meta_delivery, self._meta_upstream)

    async def _deliver(self, stream: StreamT, delivery: Delivery, upstream: frozenset[str]) -> None:
        """Send each batch; it is acknowledged once its outcomes are durable (domain.md §7).

        Unlike the lead agent, the deliver agents finish a batch before taking the next: at the
        default 1 s linger a background finish bought nothing, and it made the linger restart
        sooner, so a saturated worker sent 8 % more requests (README "Latency levers").
        """
        # take_events is on faust's Stream, not on the StreamT protocol it is typed with.
        async for events in stream.take_events(  # type: ignore[attr-defined]
            self.settings.delivery_batch_max,
            within=self.settings.delivery_linger,
            backlog=lambda last_offsets: self._waiting(last_offsets, upstream),
        ):
            await delivery.handle(events)

    def _waiting(self, last_offsets: Mapping[TP, int], upstream: frozenset[str]) -> int:
        """How many records this worker's consumer knows to wait after ``last_offsets``.

        Also counts what waits on this worker's partitions of the ``upstream`` topics (read by
        the agents that produce the batch's topic): on a backlog the first batch would otherwise
        leave part-full, with what the lead agent produced in one linger.
        """
        consumer = cast("Consumer", self.app.consumer)  # the app's transport's (runtime/app.py)
        return consumer.records_waiting(last_offsets, upstream)
