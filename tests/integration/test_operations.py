"""Issue 6 end to end: /metrics from a running worker, health endpoints, and `leadstream lag`."""

from __future__ import annotations

import json
import time

import requests
from confluent_kafka import Consumer, Producer

from streams.local.stack import LocalStack, wait_until
from streams.runtime.admin import ensure_topics
from tests.conftest import Names
from tests.integration.helpers import form, produce, status, wait_events


def _value(text: str, series: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(series) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_of_a_running_worker_have_the_core_series(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), "LEADSTREAM_LAG_INTERVAL": "1"}
    p = names.prefix
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready()
        assert requests.get(f"{worker.url}/health/live", timeout=5).status_code == 200
        assert requests.get(f"{worker.url}/health/ready", timeout=5).json()["ready"] is True
        # Faust's views of table contents and cluster layout are not served (issue 12).
        for view in ("/table/", "/router/", "/graph/", "/stats/", "/performance/"):
            got = requests.get(f"{worker.url}{view}", timeout=5)
            assert got.status_code == 404, f"{view} is served: {got.status_code}"
        produce(stack, env, names.form, form(p, 1), form(p, 2))
        produce(
            stack,
            env,
            names.status,
            status(p, 1, "a", "qualified"),
            status(p, 2, "b", "won"),  # won without value
            status(p, 1, "a", "qualified"),
        )
        wait_events(stack, p, 1, worker)
        text = wait_until(
            lambda: (lambda t: t if "leadstream_consumer_lag{" in t else None)(worker.metrics()),
            30,
            "lag series",
            worker,
        )
    finally:
        worker.stop()
    assert _value(text, 'leadstream_events_in_total{topic="' + names.form) == 2
    assert _value(text, 'leadstream_events_in_total{topic="' + names.status) == 3
    assert _value(text, 'leadstream_conversions_built_total{event="ApplicationApproval"}') == 1
    assert _value(text, 'leadstream_core_outcomes_total{outcome="duplicate_input"}') == 1
    assert _value(text, 'leadstream_dead_letters_total{reason="invalid_value"}') == 1
    assert (
        _value(
            text, 'leadstream_deliveries_total{code="0",destination="tiktok",outcome="delivered"}'
        )
        == 1
    )
    assert _value(text, "leadstream_delivery_batch_size_count") >= 1
    assert _value(text, 'leadstream_api_request_seconds_count{destination="tiktok"}') >= 1
    assert _value(text, 'leadstream_table_keys{table="leads"}') == 2
    assert _value(text, 'leadstream_destination_circuit_open{destination="tiktok"}') == 0
    assert "leadstream_consumer_lag_seconds{" in text
    assert _value(text, "faust_messages_received_total") >= 5  # Faust's own Prometheus sensor


def test_lag_reports_the_exact_lag_of_a_group_that_stopped_part_way(stack: LocalStack) -> None:
    topic, group = f"lagtest-{time.monotonic_ns()}", f"laggroup-{time.monotonic_ns()}"
    ensure_topics(stack.broker.bootstrap, [topic], partitions=2)
    producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 200})
    # One 5-record batch per partition. Kafka lists the end exactly, so lag needs no confirming
    # fetch (LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS is off on Kafka); Tansu would list 1, and the
    # local stack turns the fetch on there.
    assert ("LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS" in stack.env()) == (stack.broker.kind == "tansu")
    for i in range(10):
        producer.produce(topic, value=str(i).encode(), partition=i % 2)
    producer.flush(10)
    consumer = Consumer(
        {
            "bootstrap.servers": stack.broker.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    read = 0
    deadline = time.monotonic() + 60
    while read < 4 and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            consumer.commit(message=msg, asynchronous=False)
            read += 1
    consumer.close()
    assert read == 4

    result = stack.run_cli("lag", "--group", group, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted((r["topic"], r["partition"]) for r in rows) == [(topic, 0), (topic, 1)]
    assert sum(r["lag"] for r in rows) == 6
    for r in rows:
        assert r["log_end"] == 5
        assert r["lag"] == 5 - (r["committed"] or 0)  # never committed: lag from the start
        assert (r["lag_seconds"] is not None) == (r["lag"] > 0)

    table = stack.run_cli("lag", "--group", group)
    assert "LAG-SECONDS" in table.stdout and topic in table.stdout
    over = stack.run_cli("lag", "--group", group, "--max-lag", "2")
    assert over.returncode == 1  # a failed check; 2 is a usage or configuration error
    under = stack.run_cli("lag", "--group", group, "--max-lag", "5")
    assert under.returncode == 0
