"""Issue 2: JSON lines via `leadstream produce` reach the sandbox as one ApplicationApproval."""

from __future__ import annotations

import hashlib

from streams.local.stack import LocalStack
from tests.conftest import Names
from tests.integration.helpers import (
    form,
    produce,
    sandbox_events,
    status,
    wait_caught_up,
    wait_events,
)


def test_form_and_qualified_status_arrive_as_exactly_one_qualified_lead(
    stack: LocalStack, names: Names
) -> None:
    env = names.env()
    p = names.prefix
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready()
        produce(stack, env, names.form, form(p, 1))
        produce(stack, env, names.status, status(p, 1, "c1", "Qualified"))
        wait_events(stack, p, 1, worker)
        # Every input and conversion committed: anything sent twice has been sent by now.
        wait_caught_up(stack, names.app_id, [names.form, names.status, names.conversions], worker)
        events = sandbox_events(stack, p)
    finally:
        worker.stop()
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "ApplicationApproval"
    assert event["event_id"] == f"{p}-evt-1:ApplicationApproval"
    assert event["event_source"] == "web"
    expected_email = hashlib.sha256(f"lead1.{p}@example.com".encode()).hexdigest()
    assert event["user"]["email"] in (expected_email, [expected_email])
    assert event["user"]["ttclid"] == f"E.C.P.{p}click1"
    assert event["user"]["phone"] in (
        "a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436",
        ["a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436"],
    )
    assert event["page"]["url"] == "https://shop.example.com/quote"
