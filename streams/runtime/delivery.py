"""Delivery: batch conversions per destination, send, retry, dead-letter, write receipts.

The batch passed to :meth:`Delivery.handle` is acknowledged by Faust only when ``handle``
returns, after the batch's receipts, dead letters and ledger writes are durable; so an offset is
committed only after its receipt or dead letter is (domain.md §7). While a destination is
throttled or its circuit is open, ``handle`` does not return, the stream stops pulling, and
memory stays bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faust.types import EventT

from streams.domain.retry import (
    BatchVerdict,
    CircuitChange,
    RetryPolicy,
    RetryState,
    Step,
    Verdict,
    next_step,
)
from streams.domain.types import Conversion, Rejection
from streams.errors import SerdeError
from streams.meta.payload import Skipped
from streams.runtime.destinations import Destination, Prepared
from streams.runtime.metrics import Metrics
from streams.runtime.outputs import Outputs, in_event
from streams.runtime.tables import Tables
from streams.runtime.topics import Topics
from streams.serde import pipeline as pl
from streams.settings import Settings
from streams.tiktok import payload

logger = logging.getLogger(__name__)

_LOGGED_REQUESTS_MAX = 10_000  # request ids remembered so each rejected request is logged once


@dataclass
class Item:
    """One conversion in flight, with its source event and the destination's event body."""

    event: EventT
    conv: Conversion
    body: dict[str, Any]
    attempts: int = 0
    prepared: Prepared | None = None

    @property
    def event_id(self) -> str:
        """The event_id sent to the destination (Meta's can differ from the conversion's)."""
        return self.prepared.event_id if self.prepared is not None else self.conv.event_id


@dataclass
class Result:
    """The final outcome of one item."""

    item: Item
    delivered: bool
    code: int | None
    message: str
    request_id: str | None
    reason: str = "delivered"
    field: str | None = None


@dataclass
class Circuit:
    """Auth-error circuit of one destination."""

    open: bool = False
    opened_at: datetime | None = None


class Delivery:
    """Sends batches of conversions to one destination (TikTok, Meta), with its own circuit."""

    def __init__(
        self,
        settings: Settings,
        destination: Destination,
        pipeline: pl.Pipeline,
        topics: Topics,
        tables: Tables,
        metrics: Metrics,
        outputs: Outputs,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = pl.utcnow,
    ) -> None:
        """Bind the destination and outputs; ``sleep`` and ``clock`` are injectable for tests."""
        self.settings = settings
        self.destination: Destination = destination
        self.pipeline = pipeline
        self.topics = topics
        self.tables = tables
        self.metrics = metrics
        self.outputs = outputs
        self.sleep = sleep
        self.clock = clock
        self.policy = RetryPolicy(
            horizon=settings.retry_horizon,
            backoff_initial=settings.retry_backoff_initial,
            backoff_max=settings.retry_backoff_max,
            probe_interval=settings.circuit_probe_interval,
        )
        self.circuits: dict[str, Circuit] = {}
        self._random = random.Random()  # noqa: S311 - jitter, not security
        self._logged_requests: OrderedDict[str, None] = OrderedDict()

    async def handle(self, events: Sequence[EventT]) -> None:
        """Deliver one batch of conversion events; returns when every outcome is durable."""
        now = self.clock()
        groups: dict[Any, list[Item]] = {}
        seen: set[str] = set()
        for event in events:
            item = await self._prepare(event, now, seen)
            if item is not None and item.prepared is not None:
                groups.setdefault(item.prepared.group, []).append(item)
        # Destinations are independent: one paused by its auth circuit does not hold the others'
        # outcomes back (the batch is still acknowledged only when every group is done).
        await asyncio.gather(*(self._deliver_group(dest, items) for dest, items in groups.items()))
        await self.outputs.flush()

    async def _deliver_group(self, dest: payload.Destination, items: list[Item]) -> None:
        for result in await self._send_group(dest, items):
            await self._record(dest, result)

    async def _prepare(self, event: EventT, now: datetime, seen: set[str]) -> Item | None:
        raw = pl.Raw(
            event.message.topic,
            event.message.partition,
            event.message.offset,
            event.message.key,
            event.message.value,
        )
        try:
            conv = await pl.while_registry_down(
                lambda: self.pipeline.decode_conversion(raw.value), "decoding conversions"
            )
        except (SerdeError, KeyError, ValueError, TypeError) as exc:
            reason = exc.reason if isinstance(exc, SerdeError) else "schema_mismatch"
            out = self.pipeline.dead_letter(
                raw, reason, f"Conversion: {exc}", None, raw.value or b"", now
            )
            in_event(event)
            self.outputs.send_dead(out, event.message.partition)
            return None
        if not conv.click.page_url and self.settings.fallback_page_url:
            click = dataclasses.replace(conv.click, page_url=self.settings.fallback_page_url)
            conv = dataclasses.replace(conv, click=click)
        item = Item(event=event, conv=conv, body={})
        prepared = self.destination.prepare(conv, now)
        if isinstance(prepared, Skipped):
            self.metrics.core.labels(f"{self.destination.name}_{prepared.reason}").inc()
            logger.debug("%s: %s", self.destination.name, prepared.message)
            return None
        if isinstance(prepared, Rejection):
            await self._dead(item, prepared.reason, prepared.message, None, now, prepared.field)
            return None
        if prepared.event_id in seen or self._delivered(event, prepared.event_id):
            self.metrics.core.labels("duplicate_delivery").inc()
            return None
        seen.add(prepared.event_id)
        item.prepared, item.body = prepared, prepared.body
        return item

    def _delivered(self, event: EventT, event_id: str) -> bool:
        in_event(event)
        key = self.destination.ledger_key(event_id)
        return self.tables.delivered.data.get(key) is not None

    async def _send_group(self, dest: payload.Destination, items: list[Item]) -> list[Result]:
        """Send ``items`` to ``dest`` until each has a final outcome.

        The work is a queue of requests (chunks of items). After each answer the retry plan
        (``streams.domain.retry.next_step``) says what next; this shell only carries it out:
        outcomes, the requests to send next, the wait, and the circuit.
        """
        name = self.destination.name
        circuit = self.circuits.setdefault(f"{dest.event_source}:{dest.event_source_id}", Circuit())
        size = self.settings.delivery_batch_max
        work: deque[list[Item]] = deque(items[i : i + size] for i in range(0, len(items), size))
        results: list[Result] = []
        state = RetryState()
        while work:
            chunk, stale = self._fresh(work.popleft())
            results += stale
            if not chunk:
                continue
            verdict, request_id = await self._post(dest, chunk)
            for it in chunk:
                it.attempts += 1
            self.metrics.requests.labels(name, verdict.verdict.value).inc()
            plan = next_step(
                state,
                verdict,
                size=len(chunk),
                attempts=chunk[0].attempts,
                now=self.clock(),
                rand=self._random.random(),
                policy=self.policy,
            )
            state = plan.state
            if plan.circuit is CircuitChange.CLOSE:
                self._close(circuit, dest)  # the API read the events: the credentials work
            elif plan.circuit is CircuitChange.OPEN:
                self._open(circuit, dest, verdict)
            results += [
                Result(chunk[f.index], f.delivered, verdict.code, f.message, request_id, f.reason)
                for f in plan.finished
            ]
            if plan.step is Step.SPLIT:
                self._log_split(chunk, verdict)
            elif plan.step is Step.SLEEP:
                self._log_retry(chunk, verdict, plan.wait)
            if plan.wait:
                await self.sleep(plan.wait)  # a backoff, or a probe interval while paused
            work.extendleft(reversed([[chunk[i] for i in idx] for idx in plan.resend]))
        return results

    def _fresh(self, chunk: list[Item]) -> tuple[list[Item], list[Result]]:
        """Split off the events the destination may no longer take (aged during a wait)."""
        now = self.clock()
        fresh, stale = [], []
        for it in chunk:
            refused = self.destination.expired(it.conv, now)
            if refused is None:
                fresh.append(it)
            else:
                stale.append(
                    Result(it, False, None, refused.message, None, refused.reason, refused.field)
                )
        return fresh, stale

    def _log_split(self, chunk: list[Item], verdict: BatchVerdict) -> None:
        name = self.destination.name
        if verdict.verdict is Verdict.SPLIT:
            logger.warning(
                "%s: %d events rejected as too many (code=%s); splitting to %d",
                name,
                len(chunk),
                verdict.code,
                len(chunk) // 2,
            )
        else:
            logger.warning(
                "%s: %d events rejected without naming the bad ones (code=%s: %s); "
                "bisecting to isolate them",
                name,
                len(chunk),
                verdict.code,
                verdict.message,
            )

    def _log_retry(self, chunk: list[Item], verdict: BatchVerdict, delay: float) -> None:
        self.metrics.retries.labels(self.destination.name, str(verdict.code or "http")).inc()
        logger.warning(
            "%s: retrying %d events in %.2fs (code=%s: %s)",
            self.destination.name,
            len(chunk),
            delay,
            verdict.code,
            verdict.message,
        )

    async def _post(
        self, dest: payload.Destination, chunk: list[Item]
    ) -> tuple[BatchVerdict, str | None]:
        self.metrics.batch_size.observe(len(chunk))
        started = time.perf_counter()
        try:
            answer = await asyncio.to_thread(self.destination.send, dest, [it.body for it in chunk])
            verdict, request_id = answer.verdict, answer.request_id
            status, body = answer.http_status, answer.body
        finally:
            self.metrics.request_seconds.labels(self.destination.name).observe(
                time.perf_counter() - started
            )
        if verdict.verdict is not Verdict.DELIVERED or verdict.rejected:
            self._log_rejected(dest, chunk, verdict, request_id, status, body)
        return verdict, request_id

    def _log_rejected(
        self,
        dest: payload.Destination,
        chunk: list[Item],
        verdict: BatchVerdict,
        request_id: str | None,
        status: int | None,
        body: str,
    ) -> None:
        """WARNING with the full answer of a request not wholly accepted, once per request id.

        The answer is logged, not the request: the request carries IPs and user agents, and the
        token is never in either. Retryable answers are logged by the retry path instead.
        """
        if status is None or verdict.verdict is Verdict.RETRY:
            return  # transient: the retry path logs it
        if request_id is not None:
            if request_id in self._logged_requests:
                return
            self._logged_requests[request_id] = None
            if len(self._logged_requests) > _LOGGED_REQUESTS_MAX:
                self._logged_requests.popitem(last=False)
        logger.warning(
            "%s %s/%s: request %s (%d events: %s) answered HTTP %s, %s: %s",
            self.destination.name,
            dest.event_source,
            dest.event_source_id,
            request_id,
            len(chunk),
            ", ".join(it.event_id for it in chunk[:20]) + (", ..." if len(chunk) > 20 else ""),
            status,
            verdict.verdict.value,
            body,
        )

    def _open(self, circuit: Circuit, dest: payload.Destination, verdict: BatchVerdict) -> None:
        if not circuit.open:
            circuit.open, circuit.opened_at = True, self.clock()
            kind = "auth error" if verdict.verdict is Verdict.AUTH else "configuration error"
            logger.error(
                "%s %s/%s: %s %s (%s); delivery paused, probing every %.0fs",
                self.destination.name,
                dest.event_source,
                dest.event_source_id,
                kind,
                verdict.code if verdict.code is not None else "-",
                verdict.message,
                self.settings.circuit_probe_interval,
            )
        self.metrics.circuit_open.labels(self.destination.name).set(1)

    def _close(self, circuit: Circuit, dest: payload.Destination) -> None:
        if circuit.open:
            paused = self.clock() - (circuit.opened_at or self.clock())
            logger.warning(
                "%s %s/%s: delivery resumed after %.0fs paused",
                self.destination.name,
                dest.event_source,
                dest.event_source_id,
                paused.total_seconds(),
            )
            circuit.open = False
        self.metrics.circuit_open.labels(self.destination.name).set(0)

    async def _record(self, dest: payload.Destination, result: Result) -> None:
        now = self.clock()
        it = result.item
        prepared = it.prepared
        assert prepared is not None  # noqa: S101 - only prepared items are sent
        if result.delivered:
            in_event(it.event)
            stamp = str(int(now.timestamp() * 1000)).encode()
            key = self.destination.ledger_key(it.event_id)
            self.outputs.table_set(self.tables.delivered, key, stamp, it.event.message.partition)
        else:
            await self._dead(it, result.reason, result.message, result.code, now, result.field)
        value = self.pipeline.serde.encode(
            self.settings.topic_deliveries,
            "DeliveryReceipt",
            {
                "event_id": it.event_id,
                "event": prepared.event_name,
                "lead_id": it.conv.lead_id,
                "destination": self.destination.name,
                "event_source": prepared.event_source,
                "event_source_id": prepared.event_source_id,
                "outcome": "DELIVERED" if result.delivered else "DEAD_LETTERED",
                "api_code": result.code,
                "message": result.message[:1000],
                "request_id": result.request_id,
                "attempts": it.attempts,
                "test_event": prepared.test_event,
                "decided_at": now,
            },
        )
        self.outputs.send(self.settings.topic_deliveries, it.event_id.encode(), value)
        outcome = "delivered" if result.delivered else result.reason
        self.metrics.deliveries.labels(self.destination.name, outcome, str(result.code)).inc()

    async def _dead(
        self,
        it: Item,
        reason: str,
        message: str,
        code: int | None,
        now: datetime,
        field: str | None = None,
    ) -> None:
        msg = it.event.message
        raw = pl.Raw(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
        label = f"Conversion event_id={it.conv.event_id}"
        text = message if message.startswith(label) else f"{label}: {message}"
        if code:
            text += f" (code {code})"
        out = self.pipeline.dead_letter(
            raw, reason, text, field, msg.value or b"", now, it.event_id
        )
        in_event(it.event)
        self.outputs.send_dead(out, msg.partition)
