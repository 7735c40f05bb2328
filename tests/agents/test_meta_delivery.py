"""Meta delivery driven directly: the Delivery shell with the Meta destination and the Meta sandbox.

No broker: fake topics and tables (from the TikTok delivery tests), the real Meta client talking
HTTP to the standalone Meta sandbox, a recorder instead of ``asyncio.sleep``. Receipts and dead
letters are decoded with the real AvroSerde.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from streams.domain.types import Conversion, MatchKeys, SourceKind
from streams.local.meta_sandbox.server import MetaSandbox, SandboxConfig
from streams.meta.client import MetaEventsClient
from streams.runtime.destinations import MetaDestination
from streams.runtime.metrics import Metrics
from streams.serde.avro import AvroSerde
from streams.settings import Settings
from tests.agents.test_delivery_service import (
    RigBase,
    StopProbing,
    wire_delivery,
)
from tests.unit.factories import EMAIL_SHA, FORM_EVENT_ID, NOW, make_conversion

PIXEL = "123456789012345"
TOKEN = "meta-test-token"  # noqa: S105 - the sandbox's token, not a credential
TOPIC = "t.leadstream.conversions"
META_PHONE_SHA = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"


def meta_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "leadstream_destination_circuit_open", {"destination": "meta"}
    )


@dataclass
class Sleeps:
    """Records delays and the Meta circuit gauge; runs a hook after each sleep."""

    metrics: Metrics
    limit: int = 50
    delays: list[float] = field(default_factory=list)
    gauge: list[float | None] = field(default_factory=list)
    after: Callable[[int], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.gauge.append(meta_gauge(self.metrics))
        if self.after is not None:
            self.after(len(self.delays))
        if len(self.delays) >= self.limit:
            raise StopProbing


@dataclass(kw_only=True)
class Rig(RigBase):
    """The Meta rig: the real Meta client and the standalone Meta sandbox."""

    sandbox: MetaSandbox
    sleeps: Sleeps


@pytest.fixture
def sandbox() -> Iterator[MetaSandbox]:
    config = SandboxConfig(
        access_tokens=frozenset({TOKEN}), pixel_ids=frozenset({PIXEL}), clock=lambda: NOW
    )
    with MetaSandbox(config) as box:
        yield box


@pytest.fixture
def make_rig(serde: AvroSerde, sandbox: MetaSandbox) -> Callable[..., Rig]:
    def make(clock: Callable[[], datetime] = lambda: NOW, **overrides: Any) -> Rig:
        settings = Settings(
            **{
                "tiktok_pixel_code": "TTPIXEL",
                "tiktok_access_token": "tt-token",
                "meta_pixel_id": PIXEL,
                "meta_access_token": TOKEN,
                "meta_api_url": sandbox.url,
                "topic_deliveries": "t.leadstream.deliveries",
                "topic_dead_letter": "t.leadstream.dead-letter",
                "retry_backoff_initial": 1.0,
                "circuit_probe_interval": 30.0,
                **overrides,
            }
        )
        metrics = Metrics()
        client = MetaEventsClient(sandbox.url, "v25.0", PIXEL, TOKEN, timeout=5)
        sleeps = Sleeps(metrics)
        destination = MetaDestination(settings, client)
        w = wire_delivery(settings, destination, serde, metrics, sleeps, clock)
        return Rig(sandbox=sandbox, sleeps=sleeps, serde=serde, metrics=metrics, **vars(w))

    return make


def conv(n: int, **overrides: Any) -> Conversion:
    """A qualified web lead, as the core emits it for TikTok (ApplicationApproval)."""
    fields: dict[str, Any] = {
        "event_id": f"{FORM_EVENT_ID}-{n}:ApplicationApproval",
        "event": "ApplicationApproval",
        "lead_id": f"lead-{n}",
        "source_id": f"c-{n}",
        "status": "qualified",
        "keys": MatchKeys(EMAIL_SHA, None, None, META_PHONE_SHA),
        "fbc": "fb.1.1741953600123.IwAR2abc",
    }
    return make_conversion(**{**fields, **overrides})


async def test_delivered_with_meta_names_ids_receipts_and_ledger(make_rig: Any) -> None:
    rig: Rig = make_rig()
    await rig.handle(conv(0), conv(1))
    ids = [f"{FORM_EVENT_ID}-{n}:QualifiedLead" for n in (0, 1)]
    assert [e["event_id"] for e in rig.sandbox.events()] == ids
    assert {e["event_name"] for e in rig.sandbox.events()} == {"QualifiedLead"}
    receipts = rig.receipts()
    assert [r["event_id"] for r in receipts] == ids
    assert {
        (r["destination"], r["event"], r["event_source"], r["event_source_id"], r["outcome"])
        for r in receipts
    } == {("meta", "QualifiedLead", "system_generated", PIXEL, "DELIVERED")}
    assert set(rig.delivered) == {f"meta:{i}".encode() for i in ids}
    assert (
        rig.metrics.registry.get_sample_value(
            "leadstream_deliveries_total",
            {"destination": "meta", "outcome": "delivered", "code": "None"},
        )
        == 2
    )


async def test_a_delivered_conversion_is_not_sent_again(make_rig: Any) -> None:
    rig: Rig = make_rig()
    await rig.handle(conv(0))
    await rig.handle(conv(0))
    assert rig.sandbox.stats()["requests"] == 1
    assert len(rig.receipts()) == 1


async def test_an_event_over_seven_days_old_is_dead_lettered_never_sent(make_rig: Any) -> None:
    rig: Rig = make_rig()
    await rig.handle(conv(0, event_time=NOW - timedelta(days=8)), conv(1))
    assert [d["reason"] for d in rig.dead()] == ["too_old_for_destination"]
    assert rig.dead()[0]["field"] == "event_time"
    assert [e["event_id"] for e in rig.sandbox.events()] == [f"{FORM_EVENT_ID}-1:QualifiedLead"]
    assert rig.sandbox.stats()["requests"] == 1


async def test_an_event_that_turns_seven_days_old_during_a_pause_is_never_sent(
    make_rig: Any,
) -> None:
    """Fresh when read, 7 days old after an auth pause: dead-lettered before the next attempt."""
    clock = {"now": NOW}
    rig: Rig = make_rig(clock=lambda: clock["now"])
    rig.sandbox.configure_faults(auth_error=True)

    def pause_for_an_hour_then_heal(sleeps: int) -> None:
        clock["now"] = NOW + timedelta(hours=sleeps)
        if sleeps == 2:
            rig.sandbox.configure_faults(auth_error=False)

    rig.sleeps.after = pause_for_an_hour_then_heal
    aging = conv(0, event_time=NOW - timedelta(days=7) + timedelta(minutes=30))
    await rig.handle(aging, conv(1))
    assert [(d["reason"], d["field"]) for d in rig.dead()] == [
        ("too_old_for_destination", "event_time")
    ]
    assert [e["event_id"] for e in rig.sandbox.events()] == [f"{FORM_EVENT_ID}-1:QualifiedLead"]
    assert rig.outcomes() == {
        f"{FORM_EVENT_ID}-0:QualifiedLead": "DEAD_LETTERED",
        f"{FORM_EVENT_ID}-1:QualifiedLead": "DELIVERED",
    }


async def test_a_status_meta_does_not_map_is_skipped_and_counted(make_rig: Any) -> None:
    rig: Rig = make_rig(meta_stage_map='{"won": "Purchase"}')
    await rig.handle(conv(0))
    assert rig.receipts() == [] and rig.dead() == []
    assert rig.sandbox.stats()["requests"] == 0
    assert (
        rig.metrics.registry.get_sample_value(
            "leadstream_core_outcomes_total", {"outcome": "meta_status_not_mapped"}
        )
        == 1
    )


async def test_one_bad_event_is_bisected_out_the_rest_delivered(make_rig: Any) -> None:
    rig: Rig = make_rig()
    bad = conv(2, fbc="not-an-fbc")
    await rig.handle(conv(0), conv(1), bad, conv(3))
    outcomes = rig.outcomes()
    assert outcomes.pop(f"{FORM_EVENT_ID}-2:QualifiedLead") == "DEAD_LETTERED"
    assert set(outcomes.values()) == {"DELIVERED"} and len(outcomes) == 3
    assert [d["reason"] for d in rig.dead()] == ["api_rejected"]
    assert "fbc" in rig.dead()[0]["message"]
    assert rig.sandbox.stats()["accepted"] == 3


async def test_auth_error_pauses_meta_then_catches_up(make_rig: Any) -> None:
    rig: Rig = make_rig()
    rig.sandbox.configure_faults(auth_error=True)

    def heal(sleeps: int) -> None:
        if sleeps == 2:
            rig.sandbox.configure_faults(auth_error=False)

    rig.sleeps.after = heal
    await rig.handle(conv(0), conv(1))
    assert rig.sleeps.delays == [30.0, 30.0]
    assert rig.sleeps.gauge == [1.0, 1.0]
    assert meta_gauge(rig.metrics) == 0
    assert set(rig.outcomes().values()) == {"DELIVERED"} and rig.dead() == []


@pytest.mark.parametrize("fault", ["transient", "http_503", "rate_limit"])
async def test_transient_failures_are_retried_then_delivered(make_rig: Any, fault: str) -> None:
    rig: Rig = make_rig()
    rig.sandbox.configure_faults(**{fault: 1.0})

    def heal(sleeps: int) -> None:
        if sleeps == 3:
            rig.sandbox.configure_faults(clear=True)

    rig.sleeps.after = heal
    await rig.handle(conv(0))
    assert len(rig.sleeps.delays) == 3
    assert all(g in (None, 0.0) for g in rig.sleeps.gauge)  # retried, never paused
    assert rig.outcomes() == {f"{FORM_EVENT_ID}-0:QualifiedLead": "DELIVERED"}


async def test_booking_keeps_the_browser_event_id_and_is_a_website_event(make_rig: Any) -> None:
    rig: Rig = make_rig()
    booking = conv(
        5,
        event_id="browser-booking-5",
        event="Schedule",
        source_kind=SourceKind.BOOKING,
        status=None,
    )
    await rig.handle(booking)
    [event] = rig.sandbox.events()
    assert (event["event_id"], event["event_name"], event["action_source"]) == (
        "browser-booking-5",
        "Schedule",
        "website",
    )


async def test_test_event_code_sends_test_events(make_rig: Any) -> None:
    rig: Rig = make_rig(meta_test_event_code="TEST42")
    await rig.handle(conv(0))
    assert rig.sandbox.stats()["test"]["accepted"] == 1
    assert rig.receipts()[0]["test_event"] is True
