"""Issue 5: `leadstream dead-letters` lists and re-drives; a re-drive after a fix sends once."""

from __future__ import annotations

import json

from streams.local.stack import LocalStack, wait_until
from tests.conftest import Names
from tests.integration.helpers import form, produce, sandbox_events, status, wait_caught_up


def test_redrive_after_the_late_form_arrives_sends_exactly_once(
    stack: LocalStack, names: Names
) -> None:
    p = names.prefix
    env = {**names.env(), "LEADSTREAM_PENDING_WAIT": "2", "LEADSTREAM_EXPIRY_INTERVAL": "1"}
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready()
        produce(stack, env, names.status, status(p, 1, "c1", "qualified"))  # no form, no keys

        def listed() -> list[dict]:
            result = stack.run_cli("dead-letters", "--json", **env)
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        rows = wait_until(listed, 60, "the unmatched_lead dead letter", worker)
        assert [r["reason"] for r in rows] == ["unmatched_lead"]
        assert rows[0]["source_topic"] == names.status

        summary = stack.run_cli("dead-letters", **env)
        assert "1 dead letters" in summary.stdout and "unmatched_lead" in summary.stdout

        produce(stack, env, names.form, form(p, 1))  # the fix: the form is published late
        wait_caught_up(stack, names.app_id, [names.form, names.conversions], worker)
        assert sandbox_events(stack, p) == []  # the form alone sends nothing

        redrive = stack.run_cli("dead-letters", "--reason", "unmatched_lead", "--redrive", **env)
        assert redrive.returncode == 0, redrive.stderr
        assert "re-drove 1 dead letters" in redrive.stdout
        events = wait_until(
            lambda: sandbox_events(stack, p), 60, "the re-driven conversion", worker
        )
        assert [e["event_id"] for e in events] == [f"{p}-evt-1:ApplicationApproval"]
        assert events[0]["user"]["ttclid"] == f"E.C.P.{p}click1"

        received = stack.sandbox_get("/_sandbox/stats", prefix=f"{p}-")["events_received"]
        again = stack.run_cli("dead-letters", "--reason", "unmatched_lead", "--redrive", **env)
        assert again.returncode == 0
        # The second re-drive is on the topic (the command waits for Kafka); once it and any
        # conversion it caused are committed, whatever it would send has been sent.
        wait_caught_up(stack, names.app_id, [names.status, names.conversions], worker)
        assert stack.sandbox_get("/_sandbox/stats", prefix=f"{p}-")["events_received"] == received
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert 'leadstream_core_outcomes_total{outcome="duplicate_conversion"} 1.0' in metrics
