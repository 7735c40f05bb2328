"""Meta answers classified: rate limits retry, 190 pauses, 100 is permanent, bisect on batches."""

from __future__ import annotations

from typing import Any

import pytest

from streams.domain.retry import Verdict
from streams.meta.verdicts import GraphError, classify, parse_error


def envelope(code: int, subcode: int | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": "Invalid parameter",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbC",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra)
    return {"error": error}


def verdict(status: int | None, body: Any, n: int = 4) -> Verdict:
    return classify(status, parse_error(body), None, n).verdict


@pytest.mark.parametrize("code", [4, 17, 80003, 1, 2, 5000])
def test_rate_limits_and_transient_codes_retry(code: int) -> None:
    assert verdict(400, envelope(code)) is Verdict.RETRY


def test_is_transient_is_honoured() -> None:
    assert verdict(400, envelope(999, is_transient=True)) is Verdict.RETRY
    assert verdict(400, envelope(999, is_transient=False)) is Verdict.UNKNOWN


@pytest.mark.parametrize(("code", "subcode"), [(190, None), (190, 463), (190, 460), (200, None)])
def test_token_and_permission_errors_pause(code: int, subcode: int | None) -> None:
    assert verdict(400, envelope(code, subcode)) is Verdict.AUTH
    assert verdict(401, envelope(code, subcode)) is Verdict.AUTH


def test_unknown_dataset_is_configuration_not_the_events_fault() -> None:
    assert verdict(400, envelope(100, 33), n=1) is Verdict.CONFIG
    assert verdict(400, envelope(100, 33), n=4) is Verdict.CONFIG


@pytest.mark.parametrize("subcode", [2804003, 2804001, 2804019, None])
def test_invalid_parameter_bisects_a_batch(subcode: int | None) -> None:
    assert verdict(400, envelope(100, subcode), n=4) is Verdict.BISECT


def test_invalid_parameter_rejects_a_single_event() -> None:
    result = classify(400, parse_error(envelope(100, 2804003)), None, 1)
    assert result.verdict is Verdict.REJECTED
    assert result.code == 100
    assert "2804003" in result.rejected[0]


def test_success_is_delivered() -> None:
    result = classify(200, None, 3, 3)
    assert result.verdict is Verdict.DELIVERED and result.message == "events_received=3"


def test_200_without_events_received_is_retried() -> None:
    assert classify(200, None, None, 3).verdict is Verdict.RETRY


@pytest.mark.parametrize("status", [None, 500, 502, 503, 408, 429])
def test_transport_failures_retry(status: int | None) -> None:
    assert classify(status, None, None, 3).verdict is Verdict.RETRY


def test_5xx_with_an_envelope_retries() -> None:
    assert verdict(500, envelope(100)) is Verdict.RETRY


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_4xx_without_envelope_is_configuration(status: int) -> None:
    assert classify(status, None, None, 3).verdict is Verdict.CONFIG


def test_413_splits() -> None:
    assert classify(413, None, None, 3).verdict is Verdict.SPLIT


def test_parse_error_folds_user_messages() -> None:
    error = parse_error(
        envelope(100, 2804003, error_user_title="Event Timestamp Too Old", error_user_msg="old")
    )
    assert error == GraphError(
        100, 2804003, "Invalid parameter: Event Timestamp Too Old: old", False, "AbC"
    )


@pytest.mark.parametrize("body", [None, [], {"error": "x"}, {"events_received": 1}])
def test_parse_error_ignores_non_envelopes(body: Any) -> None:
    assert parse_error(body) is None


def test_parse_error_ignores_non_integer_codes() -> None:
    error = parse_error({"error": {"code": "190", "error_subcode": True}})
    assert error is not None and error.code is None and error.subcode is None
