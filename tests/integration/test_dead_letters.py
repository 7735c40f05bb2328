"""Issue 5: `leadstream dead-letters` lists and re-drives; a re-drive after a fix sends once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.local.stack import LocalStack, wait_until
from streams.ops.produce import producer_config
from streams.serde.avro import AvroSerde
from streams.settings import load_settings
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


def test_listing_starts_at_the_earliest_retained_offset(stack: LocalStack, names: Names) -> None:
    """Retention (here DeleteRecords) removed the head: offset 0 is gone, the rest is listed."""
    topic = names.dead_letter
    admin = AdminClient({"bootstrap.servers": stack.broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    serde = AvroSerde.from_settings(load_settings(schema_registry_url=stack.registry.url))
    producer = Producer(producer_config(stack.broker.bootstrap))
    for n in range(5):
        letter = {
            "source_topic": names.status,
            "source_partition": 0,
            "source_offset": n,
            "source_key": b"lead-1",
            "reason": "unmatched_lead",
            "message": f"no form for lead-1 ({n})",
            "field": None,
            "event_id": None,
            "original": b"\x00\x00\x00\x00\x01",
            "dead_lettered_at": datetime.now(tz=UTC),
        }
        producer.produce(topic, serde.encode(topic, "DeadLetter", letter), b"lead-1")
    assert producer.flush(30) == 0
    deleted = admin.delete_records([TopicPartition(topic, 0, 3)])
    assert [f.result(timeout=30).low_watermark for f in deleted.values()] == [3]

    result = stack.run_cli("dead-letters", "--json", **names.env())

    assert result.returncode == 0, result.stderr
    assert [r["offset"] for r in json.loads(result.stdout)] == [3, 4]  # not [] (reset to end)
    assert result.stderr.splitlines()[-1] == f"read 2 dead letters from {topic}"
