"""Issue 3 end to end: expired waits, the unless-denied policy, and a scan for raw PII everywhere.

The worker runs with a 3-second wait for forms and `LEADSTREAM_CONSENT_POLICY=unless-denied`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from streams.local.stack import TOKEN, LocalStack, WorkerProcess, wait_until
from streams.serde.avro import AvroSerde
from tests.conftest import Names
from tests.integration.helpers import NOW, form, iso, produce, sandbox_events, status

RAW_EMAILS = (
    "Lead1.{p}@Example.com",
    "lead1.{p}@example.com",
    "lonely.{p}@example.com",
    "Wrong.{p}@Example.com",  # a FormSubmitted produced onto the status topic
)
RAW_PHONES = (
    "07700 900123",
    "+447700900123",
    "447700900123",
    "+44 7700 900456",
    "447700900456",
    "07700 900777",
)
WRONG_EXTERNAL_ID = "crm-wrong-{p}"


def _wrong_schema_record(stack: LocalStack, names: Names, serde: AvroSerde) -> None:
    """Produce a well-formed FormSubmitted, raw PII and all, onto the status topic."""
    p = names.prefix
    record = {
        "event_id": f"{p}-evt-wrong",
        "lead_id": f"{p}-lead-wrong",
        "occurred_at": NOW - timedelta(hours=1),
        "page_url": "https://shop.example.com/quote",
        "email": f"Wrong.{p}@Example.com",
        "phone": "07700 900777",
        "external_id": WRONG_EXTERNAL_ID.format(p=p),
        "country": "GB",
    }
    value = serde.encode(
        names.form, "FormSubmitted", record
    )  # its own subject, as a producer would
    producer = Producer({"bootstrap.servers": stack.broker.bootstrap})
    producer.produce(names.status, key=record["lead_id"].encode(), value=value)
    assert producer.flush(10) == 0


@dataclass
class Run:
    stack: LocalStack
    names: Names
    worker: WorkerProcess
    serde: AvroSerde

    def records(self, topic: str, record: str) -> list[dict[str, Any]]:
        return [
            self.serde.decode(m.value(), record) for m in self.stack.consume_all(topic, idle=1.0)
        ]


@pytest.fixture(scope="module")
def run(stack: LocalStack) -> Iterator[Run]:
    names = Names(prefix=f"waits{int(time.time())}")
    p = names.prefix
    env = {
        **names.env(),
        "LEADSTREAM_PENDING_WAIT": "3",
        "LEADSTREAM_EXPIRY_INTERVAL": "1",
        "LEADSTREAM_CONSENT_POLICY": "unless-denied",
        "LEADSTREAM_FALLBACK_PAGE_URL": "https://shop.example.com/",
    }
    worker = stack.start_worker(p, **env)
    serde = AvroSerde.connect(stack.registry.url)
    try:
        worker.wait_ready()
        produce(stack, env, names.form, form(p, 1, ad_consent="UNKNOWN"))
        produce(
            stack,
            env,
            names.status,
            status(p, 1, "s1", "qualified"),
            # No form ever arrives for lead 2 (has its own keys) or lead 3 (has none).
            status(
                p, 2, "s2", "qualified", email=f"lonely.{p}@example.com", phone="+44 7700 900456"
            ),
            status(p, 3, "s3", "qualified"),
        )
        _wrong_schema_record(stack, names, serde)
        produce(
            stack,
            env,
            names.booking,
            {  # no lead_id and an email no form has: waits, then goes with its own keys
                "booking_id": f"{p}-bk-9",
                "event_id": f"{p}-evt-booking-9",
                "occurred_at": iso(NOW - timedelta(minutes=3)),
                "email": f"Stranger.{p}@example.com",
                "page_url": "https://shop.example.com/book",
                "ip": "198.51.100.7",
            },
        )
        wait_until(lambda: len(sandbox_events(stack, p)) >= 1, 60, "the first event", worker)
        wait_until(
            lambda: (
                [e for e in stack.sandbox_get("/_sandbox/events") if "lead-2" in e["event_id"]]
                and [
                    e for e in stack.sandbox_get("/_sandbox/events") if "booking-9" in e["event_id"]
                ]
            ),
            60,
            "the expired inputs to be sent",
            worker,
        )
        wait_until(
            lambda: (
                {"unmatched_lead", "schema_mismatch"}
                <= {
                    serde.decode(m.value(), "DeadLetter")["reason"]
                    for m in stack.consume_all(names.dead_letter, idle=0.5)
                }
            ),
            60,
            "the unmatched lead and the wrong-schema record to be dead-lettered",
            worker,
        )
        yield Run(stack, names, worker, serde)
    finally:
        worker.stop()


def test_unknown_consent_is_sent_under_unless_denied(run: Run) -> None:
    ids = [e["event_id"] for e in sandbox_events(run.stack, run.names.prefix)]
    assert f"{run.names.prefix}-evt-1:ApplicationApproval" in ids


def test_expired_status_change_goes_with_its_own_keys(run: Run) -> None:
    p = run.names.prefix
    events = [
        e
        for e in run.stack.sandbox_get("/_sandbox/events")
        if e["event_id"] == f"lead-{p}-lead-2:ApplicationApproval"
    ]
    assert len(events) == 1
    user = events[0]["user"]
    email = user["email"] if isinstance(user["email"], str) else user["email"][0]
    assert email == hashlib.sha256(f"lonely.{p}@example.com".encode()).hexdigest()
    assert "ttclid" not in user
    assert events[0]["page"]["url"] == "https://shop.example.com/"
    conv = [
        c for c in run.records(run.names.conversions, "Conversion") if c["lead_id"] == f"{p}-lead-2"
    ]
    assert len(conv) == 1 and conv[0]["matched"] is False


def test_expired_status_change_without_keys_is_dead_lettered_as_unmatched_lead(run: Run) -> None:
    p = run.names.prefix
    dead = [
        d
        for d in run.records(run.names.dead_letter, "DeadLetter")
        if d["reason"] == "unmatched_lead"
    ]
    assert len(dead) == 1
    assert f"{p}-lead-3" in dead[0]["message"]
    assert dead[0]["source_topic"] == run.names.status
    original = run.serde.decode(dead[0]["original"], "LeadStatusChanged")
    assert original["change_id"] == f"{p}-s3"


def test_wrong_schema_record_is_dead_lettered_with_its_pii_hashed(run: Run) -> None:
    p = run.names.prefix
    dead = [
        d
        for d in run.records(run.names.dead_letter, "DeadLetter")
        if d["reason"] == "schema_mismatch"
    ]
    assert len(dead) == 1
    assert dead[0]["source_topic"] == run.names.status
    assert "with its PII hashed" in dead[0]["message"]
    original = run.serde.decode(dead[0]["original"], "FormSubmitted")
    assert original["lead_id"] == f"{p}-lead-wrong"
    assert original["email"] == hashlib.sha256(f"wrong.{p}@example.com".encode()).hexdigest()
    assert original["phone"] == hashlib.sha256(b"+447700900777").hexdigest()
    assert (
        original["external_id"]
        == hashlib.sha256(WRONG_EXTERNAL_ID.format(p=p).encode()).hexdigest()
    )


def test_booking_matching_no_lead_is_sent_with_its_own_keys_after_the_wait(run: Run) -> None:
    p = run.names.prefix
    events = [
        e
        for e in run.stack.sandbox_get("/_sandbox/events")
        if e["event_id"] == f"{p}-evt-booking-9"
    ]
    assert len(events) == 1
    assert events[0]["event"] == "Schedule"
    assert events[0]["user"]["ip"] == "198.51.100.7"


def test_no_raw_pii_or_token_in_any_output_internal_or_changelog_topic_or_log(run: Run) -> None:
    p = run.names.prefix
    inputs = {run.names.form, run.names.status, run.names.booking}
    admin = AdminClient({"bootstrap.servers": run.stack.broker.bootstrap})
    topics = [
        t
        for t in admin.list_topics(timeout=10).topics
        if (t.startswith(p + ".") or t.startswith(run.names.app_id)) and t not in inputs
    ]
    assert run.names.dead_letter in topics and f"{run.names.app_id}-leads-changelog" in topics
    needles = [e.format(p=p).encode() for e in RAW_EMAILS] + [ph.encode() for ph in RAW_PHONES]
    needles += [WRONG_EXTERNAL_ID.format(p=p).encode(), TOKEN.encode()]
    scanned = 0
    for topic in topics:
        for msg in run.stack.consume_all(topic, idle=0.5):
            blob = (msg.key() or b"") + b"|" + (msg.value() or b"")
            scanned += 1
            for needle in needles:
                assert needle not in blob, f"{needle!r} found in {topic}"
    assert scanned > 20
    # The raw values really were in the inputs, so the scan looks for something that exists.
    assert any(needles[0] in (m.value() or b"") for m in run.stack.consume_all(run.names.form))
    wrong = [e.format(p=p).encode() for e in RAW_EMAILS if e.startswith("Wrong")]
    assert any(wrong[0] in (m.value() or b"") for m in run.stack.consume_all(run.names.status))
    log = run.worker.log_text().encode()
    assert b"dead letter" in log  # the log does mention the records, just never their PII
    for needle in needles:
        assert needle not in log, f"{needle!r} found in the worker log"
