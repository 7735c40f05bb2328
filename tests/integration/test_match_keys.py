"""Issue 13 §4 end to end: phones with their own country code, ttclid from the page, locale."""

from __future__ import annotations

import time
from typing import Any

from streams.connection import as_connection
from streams.local.stack import LocalStack
from streams.runtime.admin import ensure_topics
from streams.runtime.outputs import producer_for
from streams.runtime.partitioner import partition_for
from tests.conftest import Names
from tests.integration.helpers import form, produce, sandbox_events, status, wait_events

TIKTOK_PHONE_SHA = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"


def _one(value: object) -> object:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def test_phones_with_their_own_country_code_ttclid_from_the_page_and_locale(
    stack: LocalStack, names: Names
) -> None:
    env, p = names.env(), names.prefix
    forms = [
        form(p, 1, phone="(+1)2133734253", country="GB", locale="en-US"),  # TikTok's example
        form(p, 2, phone="+1 213-373-4253", country=None),
        form(p, 3, phone="001 213 373 4253", country="DE"),
        form(
            p,
            4,
            phone="(+1) 213 373 4253",
            ttclid=None,
            page_url=f"https://shop.example.com/quote?utm_source=tiktok&ttclid=E.C.P.{p}url4",
        ),
    ]
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready()
        produce(stack, env, names.form, *forms)
        produce(
            stack, env, names.status, *(status(p, n, f"c{n}", "qualified") for n in range(1, 5))
        )
        wait_events(stack, p, 4, worker)
        time.sleep(1)
        events = {e["event_id"]: e for e in sandbox_events(stack, p)}
    finally:
        worker.stop()
    assert len(events) == 4
    for n in range(1, 5):
        user = events[f"{p}-evt-{n}:ApplicationApproval"]["user"]
        assert _one(user["phone"]) == TIKTOK_PHONE_SHA, n
    assert events[f"{p}-evt-1:ApplicationApproval"]["user"]["locale"] == "en-US"
    assert events[f"{p}-evt-4:ApplicationApproval"]["user"]["ttclid"] == f"E.C.P.{p}url4"


def test_claims_partition_agrees_with_the_producers_partitioner(
    stack: LocalStack, names: Names
) -> None:
    """The lead agent places identity claims where librdkafka puts a booking keyed the same."""
    topic = f"{names.prefix}-partitioner"
    ensure_topics(stack.broker.bootstrap, [topic], partitions=4)
    producer = producer_for(as_connection(stack.broker.bootstrap))
    placed: dict[bytes, int] = {}
    keys = [f"e:{n:064x}".encode() for n in range(40)]

    def report(err: object, msg: Any) -> None:
        placed[msg.key()] = msg.partition()

    for key in keys:
        producer.produce(topic, key=key, value=b"", on_delivery=report)
    assert producer.flush(30) == 0
    assert placed == {key: partition_for(key, 4) for key in keys}
    assert len(set(placed.values())) == 4
