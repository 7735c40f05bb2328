"""The payload builder and client against the standalone Meta sandbox: each shape is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from streams.domain.retry import Verdict
from streams.domain.types import MatchKeys, SourceKind
from streams.local.meta_sandbox.server import MetaSandbox, SandboxConfig
from streams.meta.client import MetaEventsClient
from streams.meta.payload import DEFAULT_STAGE_MAP_META, build_event, build_request
from streams.meta.verdicts import classify
from tests.unit.factories import EMAIL_SHA, EXTERNAL_ID_SHA, PHONE_SHA, make_conversion

PIXEL = "123456789012345"
TOKEN = "meta-tok"  # noqa: S105  # sandbox test token
META_PHONE_SHA = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"


@pytest.fixture
def sandbox() -> Iterator[MetaSandbox]:
    config = SandboxConfig(access_tokens=frozenset({TOKEN}), pixel_ids=frozenset({PIXEL}))
    with MetaSandbox(config) as box:
        yield box


def _conversions() -> list[object]:
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "event_time": now,
        "status": "qualified",
        "keys": MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA, META_PHONE_SHA),
        "fbc": "fb.1.1741953600123.IwAR2abc",
        "fbp": "fb.1.1741953600123.987654321",
    }
    return [
        make_conversion(**base),
        make_conversion(**base, event_id="b-1", event="Schedule", source_kind=SourceKind.BOOKING),
        make_conversion(**base, meta_lead_id="525645896321548", event_id="x:QualifiedLead"),
        make_conversion(
            **{**base, "status": "won"},
            event="Purchase",
            event_id="o-1:Purchase",
            value=10.0,
            currency="EUR",
            limited_data_use=True,
        ),
    ]


def test_every_shape_is_accepted(sandbox: MetaSandbox) -> None:
    now = datetime.now(UTC)
    events = [
        build_event(c, stage_map=DEFAULT_STAGE_MAP_META, now=now)  # type: ignore[arg-type]
        for c in _conversions()
    ]
    assert all(isinstance(e, dict) for e in events)
    client = MetaEventsClient(sandbox.url, "v25.0", PIXEL, TOKEN)
    resp = client.send(build_request(events))  # type: ignore[arg-type]
    verdict = classify(resp.http_status, resp.error, resp.events_received, len(events))
    assert verdict.verdict is Verdict.DELIVERED, resp.body
    recorded = {(e["event_name"], e["action_source"]) for e in sandbox.events()}
    assert recorded == {
        ("QualifiedLead", "system_generated"),
        ("Schedule", "website"),
        ("Purchase", "system_generated"),
    }
    assert len(sandbox.events()) == 4
