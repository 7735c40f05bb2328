"""Issue 13 §3 end to end: the Events API's real answers, injected by the sandbox.

A worker delivers conversions produced straight onto its conversions topic; the sandbox answers
the way the live API and its peers have been seen to: a rejection that does not name the bad
event, ``Batch.N`` paths, ``40050``, HTTP 413, HTTP 404 without the envelope, an unknown code.
"""

from __future__ import annotations

import re
import time

from streams.local.stack import LocalStack, wait_until
from tests.conftest import Names
from tests.integration.helpers import wait_paused
from tests.integration.test_delivery import (
    accepted,
    clean_sandbox,  # noqa: F401 - a fixture
    conversion,
    dead_letters,
    produce_conversions,
    start,
)


def _with_one_bad(prefix: str, n: int, bad: int) -> list[dict[str, object]]:
    records = [conversion(prefix, i) for i in range(n)]
    records[bad] = conversion(
        prefix, bad, event="Purchase", value=-5.0, currency="EUR", event_id=f"{prefix}-bad:Purchase"
    )
    return records


def test_an_unnamed_rejection_dead_letters_only_the_bad_event(
    clean_sandbox: LocalStack,  # noqa: F811
    names: Names,
) -> None:
    stack, n = clean_sandbox, 40
    stack.sandbox_post("/_sandbox/faults", {"rejection_style": "unnamed"})
    produce_conversions(stack, names, _with_one_bad(names.prefix, n, 13))
    worker = start(stack, names, LEADSTREAM_DELIVERY_LINGER="2")
    try:
        wait_until(lambda: len(accepted(stack, names.prefix)) >= n - 1, 90, "39 events", worker)
        dead = wait_until(lambda: dead_letters(stack, names), 30, "the dead letter", worker)
        time.sleep(1)
        log = worker.log_text()
    finally:
        worker.stop()
    assert len(accepted(stack, names.prefix)) == n - 1
    assert [d["event_id"] for d in dead_letters(stack, names)] == [f"{names.prefix}-bad:Purchase"]
    assert dead[0]["reason"] == "api_rejected"
    assert "properties.value" in dead[0]["message"] and "40002" in dead[0]["message"]
    assert "bisecting" in log
    assert "sandbox-token" not in log


def test_batch_n_paths_name_the_bad_event(
    clean_sandbox: LocalStack,  # noqa: F811
    names: Names,
) -> None:
    stack, n = clean_sandbox, 12
    stack.sandbox_post("/_sandbox/faults", {"rejection_style": "batch"})
    produce_conversions(stack, names, _with_one_bad(names.prefix, n, 5))
    worker = start(stack, names, LEADSTREAM_DELIVERY_LINGER="2")
    try:
        wait_until(lambda: len(accepted(stack, names.prefix)) >= n - 1, 90, "11 events", worker)
        dead = wait_until(lambda: dead_letters(stack, names), 30, "the dead letter", worker)
    finally:
        worker.stop()
    assert [d["event_id"] for d in dead] == [f"{names.prefix}-bad:Purchase"]
    assert re.search(r"Batch\.\d+\.properties\.value", dead[0]["message"])


def test_duplicated_request_40050_counts_as_delivered(
    clean_sandbox: LocalStack,  # noqa: F811
    names: Names,
) -> None:
    stack, n = clean_sandbox, 20
    stack.sandbox_post("/_sandbox/faults", {"duplicated_request": 1.0})
    produce_conversions(stack, names, [conversion(names.prefix, i) for i in range(n)])
    worker = start(stack, names)
    try:
        wait_until(lambda: len(accepted(stack, names.prefix)) >= n, 60, "20 events", worker)
        wait_until(lambda: 'code="40050"' in worker.metrics(), 30, "receipts", worker)
        time.sleep(1)
        stats = stack.sandbox_get("/_sandbox/stats")
    finally:
        worker.stop()
    assert dead_letters(stack, names) == []
    assert stats["requests"] == stats["faults_by_kind"]["duplicated_request"]  # sent once each


def test_http_413_splits_until_the_requests_fit(
    clean_sandbox: LocalStack,  # noqa: F811
    names: Names,
) -> None:
    stack, n = clean_sandbox, 30
    stack.sandbox_post("/_sandbox/faults", {"max_events_413": 7})
    produce_conversions(stack, names, [conversion(names.prefix, i) for i in range(n)])
    worker = start(stack, names, LEADSTREAM_DELIVERY_LINGER="2")
    try:
        wait_until(lambda: len(accepted(stack, names.prefix)) >= n, 60, "30 events", worker)
        time.sleep(1)
        stats = stack.sandbox_get("/_sandbox/stats", prefix=f"{names.prefix}-")
    finally:
        worker.stop()
    assert len(accepted(stack, names.prefix)) == n
    assert dead_letters(stack, names) == []
    assert stats["faults_by_kind"]["http_413"] >= 1
    assert stats["max_events_per_request"] <= 7 or stats["accepted"] == n


def test_http_404_without_envelope_pauses_as_a_configuration_error(
    clean_sandbox: LocalStack,  # noqa: F811
    names: Names,
) -> None:
    stack, n = clean_sandbox, 25
    stack.sandbox_post("/_sandbox/faults", {"http_error": 404})
    produce_conversions(stack, names, [conversion(names.prefix, i) for i in range(n)])
    worker = start(stack, names)
    try:
        wait_paused(worker)
        time.sleep(3)  # several probes while paused
        assert accepted(stack, names.prefix) == []
        assert dead_letters(stack, names) == []
        log = worker.log_text()
        assert "configuration error" in log and "/open_api/v1.3/event/track/" in log
        stack.sandbox_post("/_sandbox/faults", {"http_error": None})
        wait_until(lambda: len(accepted(stack, names.prefix)) >= n, 60, "delivery", worker)
        time.sleep(1)
    finally:
        worker.stop()
    assert len(accepted(stack, names.prefix)) == n
    assert dead_letters(stack, names) == []


def test_unknown_code_is_retried_then_dead_lettered_with_the_code(
    clean_sandbox: LocalStack,  # noqa: F811
    names: Names,
) -> None:
    stack, n = clean_sandbox, 3
    stack.sandbox_post("/_sandbox/faults", {"unknown_code": 41234})
    produce_conversions(stack, names, [conversion(names.prefix, i) for i in range(n)])
    worker = start(stack, names, LEADSTREAM_DELIVERY_LINGER="1")
    try:
        dead = wait_until(
            lambda: d if len(d := dead_letters(stack, names)) >= n else None,
            60,
            "3 dead letters",
            worker,
        )
        stats = stack.sandbox_get("/_sandbox/stats")
    finally:
        worker.stop()
    assert {d["reason"] for d in dead} == {"api_rejected"}
    assert all("41234" in d["message"] for d in dead)
    assert stats["requests"] >= 3  # retried before giving up
    assert accepted(stack, names.prefix) == []
