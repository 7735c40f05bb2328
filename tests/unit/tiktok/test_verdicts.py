"""Classifying Events API answers (events-api.md, "Response"); the backoff: domain/test_retry."""

from __future__ import annotations

from typing import Any

import pytest

from streams.tiktok.verdicts import (
    BatchVerdict,
    Verdict,
    classify,
    is_retryable_code,
    rejected_events,
)

N = 4


def _classify(
    code: int | None,
    message: str = "",
    data: dict[str, Any] | None = None,
    http: int | None = 200,
    n: int = N,
) -> BatchVerdict:
    return classify(http, code, message, data or {}, n)


# --- the response table, row by row -----------------------------------------------------------


def test_ok_is_delivered() -> None:
    assert _classify(0, "OK") == BatchVerdict(Verdict.DELIVERED, 0, "OK", {})


def test_partial_with_failed_events_names_them() -> None:
    data = {
        "failed_events": [
            {"index": 1, "path": "data.1.properties.value", "reason": "must be a number"},
            {"index": 3, "path": "data.3.event_time", "reason": "too old"},
        ]
    }
    verdict = _classify(20001, "partial", data)
    assert verdict.verdict is Verdict.DELIVERED
    assert verdict.code == 20001
    assert dict(verdict.rejected) == {
        1: "data.1.properties.value: must be a number",
        3: "data.3.event_time: too old",
    }


def test_partial_with_paths_in_message() -> None:
    message = "data.0.properties.currency: must be ISO 4217; data.2.user.email: not hashed"
    verdict = _classify(20001, message)
    assert verdict.verdict is Verdict.DELIVERED
    assert dict(verdict.rejected) == {
        0: "data.0.properties.currency: must be ISO 4217",
        2: "data.2.user.email: not hashed",
    }


def test_partial_naming_nothing_rejects_nothing() -> None:
    verdict = _classify(20001, "some events failed")
    assert verdict.verdict is Verdict.DELIVERED
    assert verdict.rejected == {}


@pytest.mark.parametrize("code", [40000, 40002])
def test_invalid_naming_an_event_rejects_only_that_event(code: int) -> None:
    verdict = _classify(code, "data.2.event_time: is older than the accepted window")
    assert verdict.verdict is Verdict.REJECTED
    assert verdict.code == code
    assert dict(verdict.rejected) == {2: "data.2.event_time: is older than the accepted window"}


@pytest.mark.parametrize("code", [40000, 40002, 40062])
def test_a_rejection_naming_no_event_bisects_the_request(code: int) -> None:
    """Never dead-letter a whole batch for a rejection that does not say which event is bad."""
    verdict = _classify(code, "properties.value: Not a valid number")
    assert verdict == BatchVerdict(Verdict.BISECT, code, "properties.value: Not a valid number")


@pytest.mark.parametrize("code", [40000, 40002, 40062])
def test_a_rejection_of_a_single_event_rejects_it(code: int) -> None:
    verdict = _classify(code, "properties.value: Not a valid number", n=1)
    assert verdict.verdict is Verdict.REJECTED
    assert dict(verdict.rejected) == {0: "properties.value: Not a valid number"}


@pytest.mark.parametrize(
    "message",
    [
        "Batch.2.properties.contents.0.content_id: Not a valid string",
        "batch.2.event: bad",
        "DATA.2.event: bad",
        "data[2].event: bad",
    ],
)
def test_index_forms_of_the_api_and_its_peers(message: str) -> None:
    verdict = _classify(40002, message)
    assert verdict.verdict is Verdict.REJECTED
    assert set(verdict.rejected) == {2}
    assert verdict.rejected[2] == message


def test_duplicated_request_is_delivered() -> None:
    verdict = _classify(40050, "Duplicated request")
    assert verdict == BatchVerdict(Verdict.DELIVERED, 40050, "Duplicated request")


def test_http_413_splits() -> None:
    assert _classify(None, "Request Entity Too Large", http=413).verdict is Verdict.SPLIT


def test_invalid_with_failed_events_prefers_their_reasons() -> None:
    data = {"failed_events": [{"index": 0, "reason": "r0"}, {"index": 1, "message": "m1"}]}
    verdict = _classify(40002, "data.0.event: bad", data)
    assert dict(verdict.rejected) == {0: "r0", 1: "m1"}


def test_no_permission_is_auth() -> None:
    assert _classify(40001, "No permission").verdict is Verdict.AUTH


def test_too_many_events_is_split() -> None:
    verdict = _classify(40061, "data: contains 1001 events", n=1001)
    assert verdict.verdict is Verdict.SPLIT
    assert verdict.rejected == {}


def test_not_hashed_naming_an_event_rejects_it() -> None:
    verdict = _classify(40062, "data.1.user.email: personal data is not hashed")
    assert verdict.verdict is Verdict.REJECTED
    assert set(verdict.rejected) == {1}


@pytest.mark.parametrize("code", [40100, 40132])
def test_throttled_is_retry(code: int) -> None:
    verdict = _classify(code, "Too many requests")
    assert verdict == BatchVerdict(Verdict.RETRY, code, "Too many requests")


@pytest.mark.parametrize("code", [40102, 40104, 40105])
def test_token_errors_are_auth(code: int) -> None:
    verdict = _classify(code, "token")
    assert verdict == BatchVerdict(Verdict.AUTH, code, "token")


@pytest.mark.parametrize("code", [50000, 50002, 51000, 51234, 52001, 53999, 60001, 61000, 69999])
def test_server_side_codes_are_retry(code: int) -> None:
    assert _classify(code, "System error").verdict is Verdict.RETRY


@pytest.mark.parametrize("http", [None, 500, 502, 503, 504, 599, 408, 429])
def test_gateway_and_transport_failures_are_retry(http: int | None) -> None:
    verdict = _classify(None, "gateway", http=http)
    assert verdict == BatchVerdict(Verdict.RETRY, None, "gateway")


def test_http_5xx_wins_over_a_body_code() -> None:
    assert _classify(40002, "data.0.event: bad", http=503).verdict is Verdict.RETRY


@pytest.mark.parametrize("http", [401, 403, 404])
def test_http_401_403_404_are_configuration_errors(http: int) -> None:
    assert _classify(None, "Not Found", http=http).verdict is Verdict.CONFIG
    assert _classify(0, "OK", http=http).verdict is Verdict.CONFIG
    assert _classify(40105, "Invalid access token", http=http).verdict is Verdict.AUTH


@pytest.mark.parametrize("http", [200, 201, 204])
def test_2xx_without_envelope_is_retry(http: int) -> None:
    verdict = _classify(None, "", http=http)
    assert verdict.verdict is Verdict.RETRY
    assert verdict.message == "answer without a JSON envelope"
    assert _classify(None, "odd body", http=http).message == "odd body"


@pytest.mark.parametrize("http", [400, 405, 410, 422])
def test_other_4xx_without_envelope_is_a_configuration_error(http: int) -> None:
    verdict = _classify(None, "Bad Request", http=http)
    assert verdict == BatchVerdict(Verdict.CONFIG, None, "Bad Request")


def test_4xx_with_the_envelope_is_read_by_its_code() -> None:
    verdict = _classify(40002, "data.1.event: bad", http=400)
    assert verdict.verdict is Verdict.REJECTED and set(verdict.rejected) == {1}


@pytest.mark.parametrize("code", [41234, 40006, 49999, 12345])
def test_unknown_code_is_retried_then_dead_lettered_by_the_shell(code: int) -> None:
    verdict = _classify(code, "unexpected")
    assert verdict == BatchVerdict(Verdict.UNKNOWN, code, "unexpected")


def test_unknown_code_naming_an_event_rejects_it() -> None:
    verdict = _classify(41234, "data.3.user.locale: unexpected")
    assert verdict.verdict is Verdict.REJECTED and set(verdict.rejected) == {3}


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (40100, True),
        (40132, True),
        (50000, True),
        (69999, True),
        (49999, False),
        (70000, False),
        (40002, False),
        (0, False),
        (20001, False),
    ],
)
def test_is_retryable_code(code: int, retryable: bool) -> None:
    assert is_retryable_code(code) is retryable


# --- rejected_events --------------------------------------------------------------------------


def test_rejected_events_drops_indexes_out_of_bounds() -> None:
    data = {
        "failed_events": [
            {"index": -1, "reason": "neg"},
            {"index": 3, "reason": "edge"},
            {"index": 2, "reason": "ok"},
            {"index": "1", "reason": "string index"},
            {"index": True, "reason": "bool is an int"},
            "not a mapping",
        ]
    }
    out = rejected_events("data.3.event: x; data.0.event: y; data.10.event: z", data, 3)
    assert out == {2: "ok", 1: "bool is an int", 0: "data.0.event: y"}


def test_rejected_events_with_no_events() -> None:
    assert rejected_events("data.0.event: bad", {"failed_events": [{"index": 0}]}, 0) == {}


def test_rejected_events_reads_failures_and_errors_keys() -> None:
    assert rejected_events("m", {"failures": [{"index": 1}]}, 2) == {1: "m"}
    assert rejected_events("m", {"errors": [{"index": 0, "message": "e0"}]}, 2) == {0: "e0"}


def test_rejected_events_failed_events_win_over_message_paths() -> None:
    data = {"failed_events": [{"index": 0, "reason": "from data"}]}
    assert rejected_events("data.0.event: from message", data, 1) == {0: "from data"}


def test_rejected_events_paths_on_separate_lines() -> None:
    out = rejected_events("data.1.event: a\ndata.4.page.url: b", {}, 5)
    assert out == {1: "data.1.event: a", 4: "data.4.page.url: b"}


def test_rejected_events_ignores_lookalike_paths() -> None:
    assert rejected_events("metadata.1.x: bad; mydata.2: bad", {}, 5) == {}
