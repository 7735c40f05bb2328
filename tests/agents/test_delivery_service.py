"""Delivery driven directly with fakes: batching, answer handling, retries, circuit, receipts.

No broker: a scripted fake Events API client, fake topics that collect what is sent, a dict as the
``delivered`` table, and a recorder instead of ``asyncio.sleep``. Outputs are decoded with the
real AvroSerde against the registry double, so the receipts and dead letters are the records a
consumer would read.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from streams.domain import records
from streams.domain.types import Channel, Conversion
from streams.errors import ApiError
from streams.runtime.delivery import Delivery
from streams.runtime.destinations import TikTokDestination
from streams.runtime.metrics import Metrics
from streams.runtime.outputs import Outputs
from streams.serde.avro import AvroSerde
from streams.serde.pipeline import Pipeline
from streams.settings import Settings
from streams.tiktok import payload
from streams.tiktok.client import TrackResponse
from streams.tiktok.verdicts import UNKNOWN_CODE_ATTEMPTS
from tests.unit.factories import NOW, TIKTOK_LEAD_ID, make_conversion

PIXEL = "CPIXEL0001"
CRM_SET = "CRMSET0001"
TOPIC = "t.leadstream.conversions"
NOW_MILLIS = str(int(NOW.timestamp() * 1000)).encode()
OK = TrackResponse(200, 0, "OK", "req-ok")


# --- fakes --------------------------------------------------------------------------------------


class FakeTopic:
    """Collects what is produced to one topic."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[tuple[bytes | None, bytes]] = []

    def get_topic_name(self) -> str:
        return self.name


class FakeTable:
    """A table as Outputs uses it: ``.data`` and the changelog topic's name."""

    def __init__(self, name: str) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = FakeTopic(f"{name}-changelog")


class FakeProducer:
    """A librdkafka producer whose every record is acknowledged; files records by topic."""

    def __init__(self, *topics: FakeTopic) -> None:
        self.topics = {t.name: t for t in topics}
        self.flushes = 0
        self.reports: list[Any] = []  # delivery callbacks, called (acknowledged) by flush/poll

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes,
        on_delivery: Any = None,
        **_: Any,
    ) -> None:
        if topic in self.topics:
            self.topics[topic].messages.append((key, value))
        if on_delivery is not None:
            self.reports.append(on_delivery)

    def poll(self, timeout: float) -> int:
        reports, self.reports = self.reports, []
        for report in reports:
            report(None, None)
        return len(reports)

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        self.poll(timeout)
        return 0


class FakeEvent:
    """A Faust event as Delivery reads it: only ``.message`` (and weakref-able)."""

    def __init__(self, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.message = SimpleNamespace(
            topic=TOPIC, partition=1, offset=offset, key=key, value=value
        )


Answer = TrackResponse | ApiError


@dataclass
class FakeClient:
    """Records every request; answers from a script, then OK once the script runs out."""

    answers: list[Answer] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    name: str = "tiktok"
    by_source: dict[str, Answer] = field(default_factory=dict)
    # Answers that depend on the request (an API that rejects requests carrying a bad event).
    by_request: Callable[[Mapping[str, Any]], Answer | None] | None = None

    def track(self, request: Mapping[str, Any]) -> TrackResponse:
        self.payloads.append(copy.deepcopy(dict(request)))
        answer = self.by_request(request) if self.by_request else None
        if answer is None:
            answer = self.by_source.get(request["event_source"])
        if answer is None:
            answer = self.answers.pop(0) if self.answers else OK
        if isinstance(answer, ApiError):
            raise answer
        return answer


class StopProbing(Exception):
    """Raised by the sleep recorder to end a test that would otherwise wait forever."""


class Sleeps:
    """Replaces asyncio.sleep: records each delay, and the circuit gauge at that moment."""

    def __init__(self, metrics: Metrics, limit: int = 50) -> None:
        self.metrics = metrics
        self.limit = limit
        self.delays: list[float] = []
        self.gauge: list[float | None] = []
        self.clock = 0.0  # fake monotonic seconds, advanced by each sleep

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock += seconds
        self.gauge.append(sample(self.metrics, "leadstream_destination_circuit_open"))
        if len(self.delays) >= self.limit:
            raise StopProbing


NO_DESTINATION_LABEL = {"leadstream_dead_letters_total", "leadstream_core_outcomes_total"}


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """A sample's value; series of the destination get ``destination="tiktok"``."""
    if name not in NO_DESTINATION_LABEL:
        labels = {"destination": "tiktok", **labels}
    return metrics.registry.get_sample_value(name, labels)


# --- fixtures -----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RigBase:
    """One Delivery with its fakes, and what a test does with them (TikTok and Meta rigs)."""

    delivery: Delivery
    serde: AvroSerde
    metrics: Metrics
    deliveries: FakeTopic
    dead_letter: FakeTopic
    delivered: dict[bytes, bytes]
    offset: int = 0

    def event(self, conv: Conversion | None = None, *, value: bytes | None = None) -> FakeEvent:
        if value is None:
            assert conv is not None
            record = records.conversion_to_record(conv)
            value = self.serde.encode(TOPIC, "Conversion", record)
        key = conv.lead_id.encode() if conv else b"lead-x"
        self.offset += 1
        return FakeEvent(100 + self.offset, key, value)

    async def handle(self, *convs: Conversion | FakeEvent) -> None:
        events = [c if isinstance(c, FakeEvent) else self.event(c) for c in convs]
        await self.delivery.handle(events)

    def receipts(self) -> list[dict[str, Any]]:
        out = []
        for key, value in self.deliveries.messages:
            rec = self.serde.decode(value, "DeliveryReceipt")
            assert key == rec["event_id"].encode()
            out.append(rec)
        return out

    def dead(self) -> list[dict[str, Any]]:
        return [self.serde.decode(v, "DeadLetter") for _, v in self.dead_letter.messages]

    def outcomes(self) -> dict[str, str]:
        return {r["event_id"]: r["outcome"] for r in self.receipts()}


@dataclass(frozen=True)
class Wired:
    """A Delivery wired to fake topics, tables and producer."""

    delivery: Delivery
    deliveries: FakeTopic
    dead_letter: FakeTopic
    delivered: dict[bytes, bytes]


def wire_delivery(
    settings: Settings,
    destination: Any,
    serde: AvroSerde,
    metrics: Metrics,
    sleep: Callable[[float], Any],
    clock: Callable[[], Any],
) -> Wired:
    """Build a Delivery for ``destination`` whose receipts, dead letters and ledger are fakes."""
    deliveries = FakeTopic(settings.topic_deliveries)
    dead_letter = FakeTopic(settings.topic_dead_letter)
    topics: Any = SimpleNamespace(deliveries=deliveries, dead_letter=dead_letter)
    delivered_table = FakeTable("delivered")
    dead_lettered = FakeTable("dead_lettered")
    tables: Any = SimpleNamespace(delivered=delivered_table, dead_lettered=dead_lettered)
    delivery = Delivery(
        settings,
        destination,
        Pipeline.from_settings(serde, settings),
        topics,
        tables,
        metrics,
        Outputs(topics, tables, metrics, FakeProducer(deliveries, dead_letter)),
        sleep=sleep,
        clock=clock,
    )
    return Wired(delivery, deliveries, dead_letter, delivered_table.data)


@dataclass(kw_only=True)
class Rig(RigBase):
    """The TikTok rig: a scripted fake client."""

    client: FakeClient
    sleeps: Sleeps

    def sent_ids(self) -> list[list[str]]:
        return [[e["event_id"] for e in p["data"]] for p in self.client.payloads]


@pytest.fixture
def make_rig(serde: AvroSerde) -> Any:
    def make(answers: list[Answer] | None = None, sleep_limit: int = 50, **overrides: Any) -> Rig:
        settings = Settings(
            **{
                "tiktok_pixel_code": PIXEL,
                "tiktok_access_token": "test-token",
                "topic_deliveries": "t.leadstream.deliveries",
                "topic_dead_letter": "t.leadstream.dead-letter",
                "retry_backoff_initial": 1.0,
                "retry_backoff_max": 60.0,
                "circuit_probe_interval": 30.0,
                **overrides,
            }
        )
        metrics = Metrics()
        client = FakeClient(list(answers or []))
        sleeps = Sleeps(metrics, sleep_limit)
        destination = TikTokDestination(settings, client)  # type: ignore[arg-type]
        w = wire_delivery(settings, destination, serde, metrics, sleeps, lambda: NOW)
        return Rig(client=client, sleeps=sleeps, serde=serde, metrics=metrics, **vars(w))

    return make


def conv(n: int, **overrides: Any) -> Conversion:
    return make_conversion(
        event_id=f"evt-{n}:QualifiedLead", lead_id=f"lead-{n}", source_id=f"c-{n}", **overrides
    )


# --- all delivered ------------------------------------------------------------------------------


async def test_all_delivered_in_one_request_with_receipts_and_ledger(make_rig: Any) -> None:
    rig: Rig = make_rig([TrackResponse(200, 0, "OK", "req-1")])
    await rig.handle(conv(0), conv(1), conv(2))

    assert len(rig.client.payloads) == 1
    request = rig.client.payloads[0]
    assert set(request) == {"event_source", "event_source_id", "data"}
    assert request["event_source"] == "web"
    assert request["event_source_id"] == PIXEL
    assert request["data"] == [payload.build_event(conv(n), "web") for n in range(3)]
    first = request["data"][0]
    assert first["event_id"] == "evt-0:QualifiedLead"
    assert first["event_time"] == int((NOW - timedelta(minutes=5)).timestamp())
    assert first["page"]["url"] == make_conversion().click.page_url

    receipts = rig.receipts()
    assert [r["event_id"] for r in receipts] == [f"evt-{n}:QualifiedLead" for n in range(3)]
    assert receipts[0] == {
        "event_id": "evt-0:QualifiedLead",
        "event": "QualifiedLead",
        "lead_id": "lead-0",
        "destination": "tiktok",
        "event_source": "web",
        "event_source_id": PIXEL,
        "outcome": "DELIVERED",
        "api_code": 0,
        "message": "OK",
        "request_id": "req-1",
        "attempts": 1,
        "test_event": False,
        "decided_at": NOW,
    }
    assert {r["outcome"] for r in receipts} == {"DELIVERED"}
    assert rig.delivered == {f"evt-{n}:QualifiedLead".encode(): NOW_MILLIS for n in range(3)}
    assert rig.dead_letter.messages == []
    assert rig.sleeps.delays == []
    assert sample(rig.metrics, "leadstream_deliveries_total", outcome="delivered", code="0") == 3
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="delivered") == 1
    assert rig.metrics.registry.get_sample_value("leadstream_delivery_batch_size_sum") == 3


async def test_duplicates_in_batch_and_in_delivered_table_are_not_sent(make_rig: Any) -> None:
    rig: Rig = make_rig()
    rig.delivered[b"evt-2:QualifiedLead"] = b"1"  # delivered before a restart
    await rig.handle(conv(0), conv(1), conv(0), conv(2), conv(1))

    assert rig.sent_ids() == [["evt-0:QualifiedLead", "evt-1:QualifiedLead"]]
    assert rig.outcomes() == {
        "evt-0:QualifiedLead": "DELIVERED",
        "evt-1:QualifiedLead": "DELIVERED",
    }
    assert len(rig.receipts()) == 2
    assert rig.delivered == {
        b"evt-0:QualifiedLead": NOW_MILLIS,
        b"evt-1:QualifiedLead": NOW_MILLIS,
        b"evt-2:QualifiedLead": b"1",
    }
    assert (
        rig.metrics.registry.get_sample_value(
            "leadstream_core_outcomes_total", {"outcome": "duplicate_delivery"}
        )
        == 3
    )


async def test_undecodable_conversion_is_dead_lettered_and_the_rest_delivered(
    make_rig: Any,
) -> None:
    rig: Rig = make_rig()
    bad = rig.event(value=b"not avro")
    await rig.handle(conv(0), bad)

    assert rig.sent_ids() == [["evt-0:QualifiedLead"]]
    [dead] = rig.dead()
    assert dead["reason"] == "undecodable"
    assert dead["original"] == b"not avro"
    assert dead["source_offset"] == bad.message.offset
    assert rig.outcomes() == {"evt-0:QualifiedLead": "DELIVERED"}


# --- per-event rejections -----------------------------------------------------------------------


async def test_partial_success_dead_letters_only_the_named_event(make_rig: Any) -> None:
    message = "Partial success: data.2.properties.currency: must be ISO 4217"
    rig: Rig = make_rig([TrackResponse(200, 20001, message, "req-p")])
    events = [rig.event(conv(n)) for n in range(4)]
    await rig.handle(*events)

    assert len(rig.client.payloads) == 1
    [dead] = rig.dead()
    assert dead["reason"] == "api_rejected"
    assert dead["event_id"] == "evt-2:QualifiedLead"
    assert dead["message"] == f"Conversion event_id=evt-2:QualifiedLead: {message} (code 20001)"
    assert "data.2.properties.currency" in dead["message"]
    assert dead["source_topic"] == TOPIC
    assert dead["source_partition"] == 1
    assert dead["source_offset"] == events[2].message.offset
    assert dead["source_key"] == b"lead-2"
    assert dead["original"] == events[2].message.value
    assert dead["dead_lettered_at"] == NOW

    assert rig.outcomes() == {
        "evt-0:QualifiedLead": "DELIVERED",
        "evt-1:QualifiedLead": "DELIVERED",
        "evt-2:QualifiedLead": "DEAD_LETTERED",
        "evt-3:QualifiedLead": "DELIVERED",
    }
    rejected = next(r for r in rig.receipts() if r["outcome"] == "DEAD_LETTERED")
    assert (rejected["api_code"], rejected["message"], rejected["request_id"]) == (
        20001,
        message,
        "req-p",
    )
    assert sorted(rig.delivered) == [f"evt-{n}:QualifiedLead".encode() for n in (0, 1, 3)]
    assert sample(rig.metrics, "leadstream_dead_letters_total", reason="api_rejected") == 1
    assert (
        sample(rig.metrics, "leadstream_deliveries_total", outcome="delivered", code="20001") == 3
    )
    assert (
        sample(rig.metrics, "leadstream_deliveries_total", outcome="api_rejected", code="20001")
        == 1
    )


async def test_invalid_parameter_dead_letters_the_event_and_resends_the_rest(
    make_rig: Any,
) -> None:
    message = "Invalid parameter: data.1.properties.value must be >= 0"
    rig: Rig = make_rig([TrackResponse(200, 40002, message, "req-bad"), OK])
    await rig.handle(conv(0), conv(1), conv(2))

    assert rig.sent_ids() == [
        ["evt-0:QualifiedLead", "evt-1:QualifiedLead", "evt-2:QualifiedLead"],
        ["evt-0:QualifiedLead", "evt-2:QualifiedLead"],
    ]
    [dead] = rig.dead()
    assert (dead["reason"], dead["event_id"]) == ("api_rejected", "evt-1:QualifiedLead")
    assert "data.1.properties.value" in dead["message"]
    by_id = {r["event_id"]: r for r in rig.receipts()}
    assert by_id["evt-1:QualifiedLead"]["outcome"] == "DEAD_LETTERED"
    assert by_id["evt-1:QualifiedLead"]["attempts"] == 1
    assert by_id["evt-0:QualifiedLead"]["outcome"] == "DELIVERED"
    assert by_id["evt-0:QualifiedLead"]["attempts"] == 2
    assert by_id["evt-2:QualifiedLead"]["outcome"] == "DELIVERED"
    assert by_id["evt-2:QualifiedLead"]["request_id"] == "req-ok"
    assert rig.sleeps.delays == []  # a permanent rejection is not a reason to wait
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="rejected") == 1
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="delivered") == 1


async def test_too_many_events_halves_the_batch_and_resends(make_rig: Any) -> None:
    rig: Rig = make_rig([TrackResponse(200, 40061, "more than 1000 events", "req-big")])
    await rig.handle(*(conv(n) for n in range(4)))

    assert [len(p["data"]) for p in rig.client.payloads] == [4, 2, 2]
    assert rig.sent_ids()[1] + rig.sent_ids()[2] == [f"evt-{n}:QualifiedLead" for n in range(4)]
    assert set(rig.outcomes().values()) == {"DELIVERED"}
    assert len(rig.receipts()) == 4
    assert {r["attempts"] for r in rig.receipts()} == {2}
    assert rig.dead() == []
    assert rig.sleeps.delays == []
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="split") == 1
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="delivered") == 2


async def test_too_many_events_for_a_single_event_is_permanent_not_a_loop(make_rig: Any) -> None:
    rig: Rig = make_rig([TrackResponse(200, 40061, "more than 1000 events", "req-one")] * 3)
    await rig.handle(conv(0))

    assert [len(p["data"]) for p in rig.client.payloads] == [1]
    assert [d["reason"] for d in rig.dead()] == ["api_rejected"]
    assert set(rig.outcomes().values()) == {"DEAD_LETTERED"}


# --- retries ------------------------------------------------------------------------------------


RETRYABLE = [
    pytest.param(TrackResponse(200, 50000, "server busy", "req-r"), "50000", id="code-50000"),
    pytest.param(TrackResponse(200, 40100, "too many requests", "req-r"), "40100", id="code-40100"),
    pytest.param(
        ApiError("Events API answered HTTP 503", status_code=503, request_id="req-r"),
        "http",
        id="http-503",
    ),
    pytest.param(ApiError("Events API timed out after 10.0s"), "http", id="timeout"),
]


@pytest.mark.parametrize(("answer", "reason"), RETRYABLE)
async def test_retryable_answers_back_off_then_deliver(
    make_rig: Any, answer: Answer, reason: str
) -> None:
    rig: Rig = make_rig([answer, answer, answer, OK])
    await rig.handle(conv(0), conv(1))

    assert rig.sent_ids() == [["evt-0:QualifiedLead", "evt-1:QualifiedLead"]] * 4
    # Full-jitter backoff from 1 s: attempt n waits in [2**n / 2, 2**n).
    delays = rig.sleeps.delays
    assert len(delays) == 3
    assert 0.5 <= delays[0] < 1.0
    assert 1.0 <= delays[1] < 2.0
    assert 2.0 <= delays[2] < 4.0
    assert set(rig.outcomes().values()) == {"DELIVERED"}
    assert {(r["attempts"], r["api_code"]) for r in rig.receipts()} == {(4, 0)}
    assert rig.dead() == []
    assert sample(rig.metrics, "leadstream_delivery_retries_total", reason=reason) == 3
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="retry") == 3


async def test_backoff_is_capped_at_the_maximum(make_rig: Any) -> None:
    busy = TrackResponse(200, 50002, "busy", None)
    rig: Rig = make_rig([busy] * 6, retry_backoff_initial=1.0, retry_backoff_max=4.0)
    await rig.handle(conv(0))

    assert len(rig.sleeps.delays) == 6
    assert all(2.0 <= d < 4.0 for d in rig.sleeps.delays[2:])
    assert rig.outcomes() == {"evt-0:QualifiedLead": "DELIVERED"}


@pytest.mark.parametrize(
    ("answer", "code", "detail"),
    [
        (TrackResponse(200, 50000, "server busy", "req-x"), 50000, "server busy (code 50000)"),
        (
            ApiError("Events API answered HTTP 503", status_code=503, request_id="req-x"),
            None,
            "Events API answered HTTP 503",
        ),
    ],
)
async def test_retry_horizon_exhausted_dead_letters_every_event(
    make_rig: Any, answer: Answer, code: int | None, detail: str
) -> None:
    rig: Rig = make_rig([answer], retry_horizon=timedelta(0))
    await rig.handle(conv(0), conv(1))

    assert len(rig.client.payloads) == 1
    assert rig.sleeps.delays == []
    dead = rig.dead()
    assert [d["event_id"] for d in dead] == ["evt-0:QualifiedLead", "evt-1:QualifiedLead"]
    assert {d["reason"] for d in dead} == {"retry_exhausted"}
    assert dead[0]["message"] == (
        "Conversion event_id=evt-0:QualifiedLead: gave up after 1 attempts over the retry "
        f"horizon: {detail}"
    )
    receipts = rig.receipts()
    assert {(r["outcome"], r["api_code"], r["request_id"]) for r in receipts} == {
        ("DEAD_LETTERED", code, "req-x")
    }
    assert rig.delivered == {}
    assert sample(rig.metrics, "leadstream_dead_letters_total", reason="retry_exhausted") == 2


# --- auth circuit -------------------------------------------------------------------------------


AUTH = [
    pytest.param(TrackResponse(200, 40105, "Access token is invalid", "req-a"), id="40105"),
    pytest.param(TrackResponse(200, 40001, "No permission", "req-a"), id="40001"),
    pytest.param(TrackResponse(200, 40102, "Access token expired", "req-a"), id="40102"),
    pytest.param(TrackResponse(200, 40104, "Access token is empty", "req-a"), id="40104"),
    pytest.param(ApiError("Events API answered HTTP 401", status_code=401), id="http-401"),
    pytest.param(
        ApiError(
            "Events API answered HTTP 404 at /open_api/v1.3/event/track/ without a JSON envelope",
            status_code=404,
            body="<html>404 Not Found</html>",
        ),
        id="http-404",
    ),
    pytest.param(
        ApiError(
            "Events API answered HTTP 403 at /open_api/v1.3/event/track/ without a JSON envelope",
            status_code=403,
        ),
        id="http-403",
    ),
    pytest.param(
        ApiError("Events API answered HTTP 400 at /x/ without a JSON envelope", status_code=400),
        id="http-400-no-envelope",
    ),
]


@pytest.mark.parametrize("answer", AUTH)
async def test_auth_error_opens_the_circuit_probes_then_resumes(
    make_rig: Any, answer: Answer, caplog: pytest.LogCaptureFixture
) -> None:
    rig: Rig = make_rig([answer, answer, answer])
    caplog.set_level(logging.DEBUG, logger="streams")
    await rig.handle(conv(0), conv(1))

    # Three probes while paused, each after one probe interval, with the gauge at 1.
    assert rig.sleeps.delays == [30.0, 30.0, 30.0]
    assert rig.sleeps.gauge == [1.0, 1.0, 1.0]
    assert len(rig.client.payloads) == 4
    assert sample(rig.metrics, "leadstream_destination_circuit_open") == 0
    assert rig.dead() == []
    assert set(rig.outcomes().values()) == {"DELIVERED"}
    assert {r["attempts"] for r in rig.receipts()} == {4}
    verdict = "config" if isinstance(answer, ApiError) else "auth"
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict=verdict) == 3

    ours = [r for r in caplog.records if r.name == "streams.runtime.delivery"]
    errors = [r.getMessage() for r in ours if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once when the circuit opens, not once per probe
    assert f"web/{PIXEL}" in errors[0]
    assert "delivery paused" in errors[0]
    if isinstance(answer, ApiError) and " at /" in str(answer):
        assert "configuration error" in errors[0]
        assert str(answer).split(" at ")[1].split()[0] in errors[0]  # the URL path
    resumed = [r.getMessage() for r in ours if "resumed" in r.getMessage()]
    assert len(resumed) == 1
    assert "test-token" not in caplog.text


async def test_circuit_stays_open_without_dead_letters_while_auth_fails(make_rig: Any) -> None:
    bad = TrackResponse(200, 40105, "Access token is invalid", "req-a")
    rig: Rig = make_rig([bad] * 10, sleep_limit=5)
    with pytest.raises(StopProbing):
        await rig.handle(conv(0))

    assert rig.sleeps.delays == [30.0] * 5
    assert sample(rig.metrics, "leadstream_destination_circuit_open") == 1
    assert rig.dead() == []
    assert rig.receipts() == []
    assert rig.delivered == {}
    assert rig.delivery.circuits[f"web:{PIXEL}"].open is True


# --- routing and settings -----------------------------------------------------------------------


async def test_web_conversion_without_page_is_dead_lettered_missing_field(make_rig: Any) -> None:
    rig: Rig = make_rig()
    await rig.handle(conv(0, page_url=None), conv(1))

    assert rig.sent_ids() == [["evt-1:QualifiedLead"]]
    [dead] = rig.dead()
    assert dead["reason"] == "missing_field"
    assert dead["event_id"] == "evt-0:QualifiedLead"
    assert "page_url" in dead["message"]
    assert "LEADSTREAM_FALLBACK_PAGE_URL" in dead["message"]
    # A conversion that never reached a destination gets a dead letter, not a receipt.
    assert rig.outcomes() == {"evt-1:QualifiedLead": "DELIVERED"}
    assert sample(rig.metrics, "leadstream_dead_letters_total", reason="missing_field") == 1


async def test_missing_page_dead_letter_names_the_field(make_rig: Any) -> None:
    rig: Rig = make_rig()
    await rig.handle(conv(0, page_url=None))

    [dead] = rig.dead()
    assert dead["field"] == "page_url"


async def test_fallback_page_url_is_used_for_conversions_without_a_page(make_rig: Any) -> None:
    fallback = "https://example.com/thanks"
    rig: Rig = make_rig(fallback_page_url=fallback)
    await rig.handle(conv(0, page_url=None, referrer_url=None), conv(1))

    [request] = rig.client.payloads
    pages = {e["event_id"]: e["page"] for e in request["data"]}
    assert pages == {
        "evt-0:QualifiedLead": {"url": fallback},
        "evt-1:QualifiedLead": {
            "url": make_conversion().click.page_url,
            "referrer": make_conversion().click.referrer_url,
        },
    }
    assert rig.dead() == []
    assert set(rig.outcomes().values()) == {"DELIVERED"}


async def test_test_event_code_marks_the_request_and_the_receipts(make_rig: Any) -> None:
    rig: Rig = make_rig(tiktok_test_event_code="TEST42")
    await rig.handle(conv(0), conv(1))

    [request] = rig.client.payloads
    assert request["test_event_code"] == "TEST42"
    assert request["event_source_id"] == PIXEL
    assert {r["test_event"] for r in rig.receipts()} == {True}
    assert len(rig.receipts()) == 2


def crm_conv(n: int) -> Conversion:
    return conv(
        n,
        channel=Channel.CRM,
        tiktok_lead_id=TIKTOK_LEAD_ID,
        crm="hubspot",
        ttclid=None,
        ttp=None,
        ip=None,
        user_agent=None,
        page_url=None,
        referrer_url=None,
    )


async def test_crm_conversion_goes_to_the_crm_event_set(make_rig: Any) -> None:
    rig: Rig = make_rig(tiktok_crm_event_set_id=CRM_SET)
    await rig.handle(crm_conv(0))

    [request] = rig.client.payloads
    assert request["event_source"] == "crm"
    assert request["event_source_id"] == CRM_SET
    [event] = request["data"]
    assert event["lead"] == {"lead_id": TIKTOK_LEAD_ID, "lead_event_source": "hubspot"}
    assert "page" not in event
    assert "ttclid" not in event["user"]
    [receipt] = rig.receipts()
    assert (receipt["event_source"], receipt["event_source_id"], receipt["outcome"]) == (
        "crm",
        CRM_SET,
        "DELIVERED",
    )


async def test_web_and_crm_conversions_are_sent_in_separate_requests(make_rig: Any) -> None:
    rig: Rig = make_rig(tiktok_crm_event_set_id=CRM_SET)
    await rig.handle(conv(0), crm_conv(1), conv(2), crm_conv(3))

    assert [(p["event_source"], p["event_source_id"]) for p in rig.client.payloads] == [
        ("web", PIXEL),
        ("crm", CRM_SET),
    ]
    assert rig.sent_ids() == [
        ["evt-0:QualifiedLead", "evt-2:QualifiedLead"],
        ["evt-1:QualifiedLead", "evt-3:QualifiedLead"],
    ]
    assert len(rig.receipts()) == 4


async def test_crm_channel_without_crm_set_goes_to_the_pixel(make_rig: Any) -> None:
    rig: Rig = make_rig(fallback_page_url="https://example.com/crm")
    await rig.handle(crm_conv(0))

    [request] = rig.client.payloads
    assert (request["event_source"], request["event_source_id"]) == ("web", PIXEL)
    assert "lead" not in request["data"][0]


# --- known deviations ---------------------------------------------------------------------------


async def test_auth_error_on_the_pixel_does_not_stop_the_crm_event_set(make_rig: Any) -> None:
    rig: Rig = make_rig(tiktok_crm_event_set_id=CRM_SET, sleep_limit=3)
    rig.client.by_source["web"] = TrackResponse(200, 40001, "No permission", "req-a")
    with pytest.raises(StopProbing):
        await rig.handle(conv(0), crm_conv(1))

    assert ("crm", CRM_SET) in [
        (p["event_source"], p["event_source_id"]) for p in rig.client.payloads
    ]


async def test_time_paused_by_the_auth_circuit_is_not_charged_to_the_retry_horizon(
    make_rig: Any,
) -> None:
    auth = TrackResponse(200, 40105, "Access token is invalid", "req-a")
    busy = TrackResponse(200, 50000, "server busy", "req-b")
    rig: Rig = make_rig([busy] + [auth] * 4 + [busy], retry_horizon=timedelta(minutes=1))
    rig.delivery.clock = lambda: NOW + timedelta(seconds=rig.sleeps.clock)  # advanced by sleeps
    await rig.handle(conv(0))

    # One 50000 starts the horizon; then paused for 4 x 30 s (longer than the 60 s horizon),
    # then one 50000, then OK.
    assert rig.outcomes() == {"evt-0:QualifiedLead": "DELIVERED"}


# --- the API's real answers (issue 13 §3) -------------------------------------------------------


def _rejects_requests_with(*bad: str, code: int = 40002, message: str = "") -> Any:
    """An API that rejects a whole request carrying a bad event, without naming it."""
    text = message or "Invalid parameters: properties.value: Not a valid number"

    def answer(request: Mapping[str, Any]) -> Answer | None:
        ids = {e["event_id"] for e in request["data"]}
        if ids & set(bad):
            return TrackResponse(400, code, text, f"req-{len(ids)}-{min(ids)}")
        return None

    return answer


async def test_a_rejection_naming_no_event_is_bisected_to_the_bad_events(make_rig: Any) -> None:
    rig: Rig = make_rig()
    bad = {"evt-2:QualifiedLead", "evt-5:QualifiedLead"}
    rig.client.by_request = _rejects_requests_with(*bad)
    await rig.handle(*(conv(n) for n in range(8)))

    outcomes = rig.outcomes()
    assert {i for i, o in outcomes.items() if o == "DEAD_LETTERED"} == bad
    assert {i for i, o in outcomes.items() if o == "DELIVERED"} == {
        f"evt-{n}:QualifiedLead" for n in (0, 1, 3, 4, 6, 7)
    }
    dead = {d["event_id"]: d for d in rig.dead()}
    assert set(dead) == bad
    for event_id, d in dead.items():
        assert d["reason"] == "api_rejected"
        assert "properties.value: Not a valid number" in d["message"]
        assert "(code 40002)" in d["message"]
        assert event_id in d["message"]
    # Every bad event ends alone in a request; no good event is ever dead-lettered.
    singles = [ids for ids in rig.sent_ids() if len(ids) == 1]
    assert all(ids[0] in bad or outcomes[ids[0]] == "DELIVERED" for ids in singles)
    assert rig.sleeps.delays == []
    assert len(rig.client.payloads) <= 2 * 8


async def test_batch_n_index_rejects_only_that_event(make_rig: Any) -> None:
    message = "Batch.1.properties.contents.0.content_id: Not a valid string"
    rig: Rig = make_rig([TrackResponse(200, 40002, message, "req-b"), OK])
    await rig.handle(conv(0), conv(1), conv(2))
    assert [d["event_id"] for d in rig.dead()] == ["evt-1:QualifiedLead"]
    assert rig.sent_ids()[1] == ["evt-0:QualifiedLead", "evt-2:QualifiedLead"]


async def test_duplicated_request_40050_counts_as_delivered(make_rig: Any) -> None:
    rig: Rig = make_rig([TrackResponse(200, 40050, "Duplicated request", "req-dup")])
    await rig.handle(conv(0), conv(1))
    assert set(rig.outcomes().values()) == {"DELIVERED"}
    assert {r["api_code"] for r in rig.receipts()} == {40050}
    assert rig.dead() == []
    assert sorted(rig.delivered) == [b"evt-0:QualifiedLead", b"evt-1:QualifiedLead"]


async def test_http_413_splits_the_request(make_rig: Any) -> None:
    too_large = ApiError(
        "Events API answered HTTP 413 at /open_api/v1.3/event/track/ without a JSON envelope",
        status_code=413,
    )
    rig: Rig = make_rig()
    rig.client.by_request = lambda r: too_large if len(r["data"]) > 2 else None
    await rig.handle(*(conv(n) for n in range(5)))
    assert [len(p["data"]) for p in rig.client.payloads] == [5, 2, 3, 1, 2]
    assert set(rig.outcomes().values()) == {"DELIVERED"}
    assert rig.dead() == []


async def test_unknown_code_is_retried_a_few_times_then_dead_lettered_with_the_code(
    make_rig: Any,
) -> None:
    unknown = TrackResponse(200, 41234, "Something new", "req-u")
    rig: Rig = make_rig([unknown] * 10)
    await rig.handle(conv(0), conv(1))

    assert len(rig.client.payloads) == UNKNOWN_CODE_ATTEMPTS
    assert len(rig.sleeps.delays) == UNKNOWN_CODE_ATTEMPTS - 1  # backed off between tries
    assert set(rig.outcomes().values()) == {"DEAD_LETTERED"}
    assert {r["api_code"] for r in rig.receipts()} == {41234}
    for d in rig.dead():
        assert d["reason"] == "api_rejected"
        assert "41234" in d["message"] and "Something new" in d["message"]
    assert sample(rig.metrics, "leadstream_api_requests_total", verdict="unknown") == 3


async def test_each_rejected_request_is_logged_in_full_once_without_the_token(
    make_rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = '{"code":40002,"message":"properties.value: Not a valid number","request_id":"r-9"}'
    rejected = TrackResponse(200, 40002, "properties.value: Not a valid number", "r-9", body=body)
    rig: Rig = make_rig([rejected, rejected, OK, OK])
    caplog.set_level(logging.WARNING, logger="streams")
    await rig.handle(conv(0), conv(1))

    logged = [r.getMessage() for r in caplog.records if body in r.getMessage()]
    assert len(logged) == 1  # the same request id answered twice: logged once
    assert logged[0].startswith("tiktok web/")
    assert "r-9" in logged[0] and "evt-0:QualifiedLead" in logged[0]
    assert all(r.levelno == logging.WARNING for r in caplog.records if body in r.getMessage())
    assert "test-token" not in caplog.text


async def test_a_transient_failure_while_paused_does_not_resume_the_destination(
    make_rig: Any,
) -> None:
    auth = TrackResponse(200, 40105, "Access token is invalid", "req-a")
    gateway = ApiError("Events API answered HTTP 503", status_code=503)
    rig: Rig = make_rig([auth, gateway, OK])
    await rig.handle(conv(0))
    assert rig.sleeps.gauge == [1.0, 1.0]  # still paused during the 503's backoff
    assert set(rig.outcomes().values()) == {"DELIVERED"}
