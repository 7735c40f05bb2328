"""Fuzz drill: hypothesis-generated hostile records interleaved with good traffic.

Every bad record must end in the dead-letter topic exactly once with the expected reason, every
good conversion must be delivered exactly once, and the worker must stay up. Full size
(`make drills`): 10,000 bad records across the three input topics; CI size: 1,200.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.local.stack import LocalStack, wait_until
from streams.serde.avro import AvroSerde
from tests.conftest import Names
from tests.drills.traffic import (
    Record,
    delivered_ids,
    figures,
    good_lead,
    produce,
    serde_for,
    start,
)
from tests.integration.helpers import wait_caught_up

NOW = datetime.now(tz=UTC)
MS_1999 = int(datetime(1999, 6, 1, tzinfo=UTC).timestamp() * 1000)
MS_FAR_FUTURE = int(datetime(3000, 1, 1, tzinfo=UTC).timestamp() * 1000)
ISO = {"EUR", "USD", "GBP", "JPY", "CHF"}
DECODE_REASONS = {"undecodable", "unknown_schema", "schema_mismatch"}
RAW_EMAIL = b"raw.person"  # every hostile form's email starts so; none may reach a dead letter raw
RAW_PHONE = "+44 7700 900555"
RAW_EXTERNAL_IDS = ("crm-raw-1", "crm-raw-2")


@dataclass(frozen=True)
class Bad:
    """A hostile record and the dead-letter reason(s) it must get."""

    kind: str
    record: str  # FormSubmitted | LeadStatusChanged | BookingCreated | raw
    fields: dict[str, Any]
    reasons: frozenset[str]
    raw: bytes = b""


def _form(i: int, **over: Any) -> dict[str, Any]:
    base = {
        "event_id": f"bad-evt-{i}",
        "lead_id": f"bad-lead-{i}",
        "occurred_at": NOW - timedelta(hours=1),
        "page_url": "https://shop.example.com/",
        "email": f"raw.person{i}@example.com",
    }
    return {**base, **over}


def _status(i: int, **over: Any) -> dict[str, Any]:
    base = {
        "change_id": f"bad-chg-{i}",
        "lead_id": f"bad-lead-{i}",
        "status": "won",
        "changed_at": NOW - timedelta(minutes=2),
        "crm": "hubspot",
        "value": 10.0,
        "currency": "EUR",
    }
    return {**base, **over}


def _booking(i: int, **over: Any) -> dict[str, Any]:
    base = {"booking_id": f"bad-bk-{i}", "event_id": f"bad-bevt-{i}", "occurred_at": NOW}
    return {**base, **over}


blank = st.sampled_from(["", " ", "\t", "\n  "])
text = st.text(min_size=1, max_size=40)
bad_ms = st.one_of(
    st.just(0),
    st.integers(1, MS_1999),  # seconds given as milliseconds, or just too old
    st.integers(int((NOW + timedelta(days=3)).timestamp() * 1000), MS_FAR_FUTURE),
)


KINDS = (
    "raw_bytes",
    "wrong_schema",
    "form_on_status_topic",
    "form_blank_field",
    "form_bad_time",
    "form_oversize",
    "form_control_chars",
    "status_bad_value",
    "status_bad_currency",
    "status_bad_time",
    "status_unmatched",
    "booking_blank_field",
    "booking_bad_time",
)


@st.composite
def hostile(draw: st.DrawFn, kind: str) -> Bad:
    """One hostile record of ``kind`` (ids are made unique afterwards by :func:`generate`)."""
    i = 0
    if kind == "raw_bytes":
        body = draw(st.binary(max_size=200))
        # Never a valid header for a registered schema: magic byte wrong, or an unknown id.
        head = draw(
            st.one_of(
                st.binary(min_size=1, max_size=1).filter(lambda b: b != b"\x00"),
                st.just(b"\x00\x7f\xff\xff\xff"),
            )
        )
        return Bad(kind, "raw", {}, frozenset(DECODE_REASONS), head + body)
    if kind == "wrong_schema":  # a booking on the form topic
        return Bad(
            kind, "BookingCreated->FormSubmitted", _booking(i), frozenset({"schema_mismatch"})
        )
    if kind == "form_on_status_topic":  # a well-formed form, raw PII and all, on the wrong topic
        fields = _form(i, phone=RAW_PHONE, external_id=draw(st.sampled_from(RAW_EXTERNAL_IDS)))
        return Bad(kind, "FormSubmitted->LeadStatusChanged", fields, frozenset({"schema_mismatch"}))
    if kind == "form_blank_field":
        field = draw(st.sampled_from(["event_id", "lead_id", "page_url"]))
        fields = _form(i, **{field: draw(blank)})
        if field == "lead_id":
            fields["lead_id"] = draw(blank)
        return Bad(kind, "FormSubmitted", fields, frozenset({"missing_field"}))
    if kind == "form_bad_time":
        return Bad(
            kind,
            "FormSubmitted",
            _form(i, occurred_at=draw(bad_ms)),
            frozenset({"invalid_timestamp"}),
        )
    if kind == "form_oversize":
        field, limit = draw(
            st.sampled_from([("page_url", 4096), ("user_agent", 1024), ("ttclid", 512)])
        )
        value = "x" * draw(st.integers(limit + 1, limit * 3))
        return Bad(kind, "FormSubmitted", _form(i, **{field: value}), frozenset({"oversize_field"}))
    if kind == "form_control_chars":
        junk = draw(st.sampled_from(["\x00", "\x07", "\x1b[31m", "\r\n"]))
        return Bad(
            kind, "FormSubmitted", _form(i, event_id=f"bad{junk}{i}"), frozenset({"invalid_field"})
        )
    if kind == "status_bad_value":
        value = draw(
            st.one_of(
                st.floats(max_value=-0.01, allow_infinity=True),
                st.just(float("nan")),
                st.just(float("inf")),
            )
        )
        return Bad(kind, "LeadStatusChanged", _status(i, value=value), frozenset({"invalid_value"}))
    if kind == "status_bad_currency":
        code = draw(
            st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6).filter(
                lambda c: c not in ISO and not (len(c) == 3 and c in _iso())
            )
        )
        return Bad(
            kind, "LeadStatusChanged", _status(i, currency=code), frozenset({"unknown_currency"})
        )
    if kind == "status_bad_time":
        return Bad(
            kind,
            "LeadStatusChanged",
            _status(i, changed_at=draw(bad_ms)),
            frozenset({"invalid_timestamp"}),
        )
    if kind == "status_unmatched":  # valid, but no form ever comes and it has no keys
        return Bad(
            kind,
            "LeadStatusChanged",
            _status(i, status="qualified", value=None, currency=None),
            frozenset({"unmatched_lead"}),
        )
    if kind == "booking_blank_field":
        field = draw(st.sampled_from(["booking_id", "event_id"]))
        return Bad(
            kind,
            "BookingCreated",
            _booking(i, **{field: draw(blank)}),
            frozenset({"missing_field"}),
        )
    return Bad(
        kind,
        "BookingCreated",
        _booking(i, occurred_at=draw(bad_ms)),
        frozenset({"invalid_timestamp"}),
    )


def _iso() -> frozenset[str]:
    from streams.domain.currencies import ISO_4217

    return ISO_4217


ID_FIELDS = ("event_id", "lead_id", "change_id", "booking_id")


def generate(count: int) -> list[Bad]:
    """Draw ``count`` hostile records with hypothesis: every kind equally often, unique ids."""
    out: list[Bad] = []
    for kind in KINDS:
        drawn: list[Bad] = []
        want = -(-count // len(KINDS))

        @settings(
            max_examples=want,
            database=None,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(hostile(kind))
        def collect(bad: Bad) -> None:
            drawn.append(bad)  # noqa: B023 - collect() runs within this iteration

        while len(drawn) < want:
            collect()
        out.extend(drawn[:want])
    random.Random(3).shuffle(out)
    unique = []
    for n, bad in enumerate(out[:count]):
        fields = dict(bad.fields)
        for name in ID_FIELDS:
            if isinstance(fields.get(name), str) and fields[name].startswith("bad"):
                fields[name] = f"{fields[name]}-{n}"
        unique.append(Bad(bad.kind, bad.record, fields, bad.reasons, bad.raw))
    return unique


def encode(bad: Bad, serde: AvroSerde, names: Names) -> Record:
    topics = {
        "FormSubmitted": names.form,
        "LeadStatusChanged": names.status,
        "BookingCreated": names.booking,
    }
    if bad.record == "raw":
        topic = random.Random(len(bad.raw)).choice(list(topics.values()))
        return topic, b"fuzz", bad.raw
    if bad.record == "BookingCreated->FormSubmitted":
        return names.form, b"fuzz", serde.encode(names.booking, "BookingCreated", bad.fields)
    if bad.record == "FormSubmitted->LeadStatusChanged":
        return names.status, b"fuzz", serde.encode(names.form, "FormSubmitted", bad.fields)
    topic = topics[bad.record]
    key = str(bad.fields.get("lead_id") or bad.fields.get("booking_id") or "fuzz").encode()
    return topic, key, serde.encode(topic, bad.record, bad.fields)


def test_fuzz_drill(stack: LocalStack, full: bool) -> None:
    n_bad, n_good = (10_000, 2_000) if full else (1_200, 300)
    names = Names(prefix=f"fuzz{int(time.time())}")
    stack.sandbox_post("/_sandbox/reset")
    serde = serde_for(stack)
    started = time.monotonic()
    bads = generate(n_bad)
    goods = [good_lead(serde, names, names.prefix, i) for i in range(n_good)]
    bad_records = [encode(b, serde, names) for b in bads]
    rest: list[tuple[Record, Bad | None]] = [(r, b) for r, b in zip(bad_records, bads, strict=True)]
    rest += [(status, None) for _form, status in goods]
    random.Random(7).shuffle(rest)
    ordered = [(form, None) for form, _status in goods] + rest  # forms first, the rest interleaved
    worker = start(stack, names, "", LEADSTREAM_PENDING_WAIT="20", LEADSTREAM_EXPIRY_INTERVAL="1")
    try:
        produced = produce(stack, [r for r, _ in ordered])
        expected = {
            produced.sources[i]: bad for i, (_, bad) in enumerate(ordered) if bad is not None
        }
        wait_until(
            lambda: len(delivered_ids(stack, names.prefix)) >= n_good,
            240,
            "good conversions",
            worker,
        )
        wait_until(
            lambda: _dead_count(worker.metrics()) >= n_bad, 240, f"{n_bad} dead letters", worker
        )
        wait_caught_up(  # committed: a second dead letter for anything would be written by now
            stack,
            names.app_id,
            [names.form, names.status, names.booking, names.conversions],
            worker,
            timeout=120,
        )
        alive = worker.proc is not None and worker.proc.poll() is None
        dead_raw = [m.value() for m in stack.consume_all(names.dead_letter, idle=1.5)]
        dead = [serde.decode(v, "DeadLetter") for v in dead_raw]
    finally:
        worker.stop()
    by_source = Counter(
        (d["source_topic"], d["source_partition"], d["source_offset"]) for d in dead
    )
    wrong = [
        (bad.kind, d["reason"], d["message"][:80])
        for d in dead
        if (bad := expected.get((d["source_topic"], d["source_partition"], d["source_offset"])))
        and d["reason"] not in bad.reasons
    ]
    missing = [bad.kind for src, bad in expected.items() if src not in by_source]
    pii = (RAW_EMAIL, RAW_PHONE.encode(), *(x.encode() for x in RAW_EXTERNAL_IDS))
    leaked = [v[:60] for v in dead_raw if any(needle in v for needle in pii)]
    wrong_topic = [
        d for d in dead if (bad := _bad_of(expected, d)) and bad.kind == "form_on_status_topic"
    ]
    ids = delivered_ids(stack, names.prefix)
    figures(
        "fuzz drill",
        bad_records=f"{n_bad} ({dict(Counter(b.kind for b in bads))})",
        good_leads=n_good,
        worker_alive=alive,
        dead_lettered=len(dead),
        by_reason=dict(Counter(d["reason"] for d in dead)),
        dead_lettered_twice=sum(1 for n in by_source.values() if n > 1),
        missing_dead_letters=len(missing),
        wrong_reason=len(wrong),
        raw_pii_in_dead_letters=len(leaked),
        good_delivered_once=f"{len(set(ids))} of {n_good} ({len(ids) - len(set(ids))} twice)",
        wall_time=f"{time.monotonic() - started:.1f}s",
    )
    assert alive
    assert missing == [] and wrong == []
    assert set(by_source) == set(expected) and max(by_source.values()) == 1
    assert all(d["message"] for d in dead)
    assert leaked == []  # raw email/phone/external_id never reach the dead-letter topic
    assert wrong_topic, "no form was produced onto the status topic"
    for d in wrong_topic:  # the scrubbed copy is kept, readable as the record it is
        original = serde.decode(d["original"], "FormSubmitted")
        assert len(original["email"]) == 64 and original["phone"] == _phone_sha()
    assert len(ids) == n_good and len(set(ids)) == n_good


def _bad_of(expected: dict[tuple[str, int, int], Bad], dead: dict[str, Any]) -> Bad | None:
    return expected.get((dead["source_topic"], dead["source_partition"], dead["source_offset"]))


def _phone_sha() -> str:
    from streams.domain.matchkeys import hash_phone

    return hash_phone(RAW_PHONE, None) or ""


def _dead_count(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("leadstream_dead_letters_total{")
    )
