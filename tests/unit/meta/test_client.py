"""MetaEventsClient against `responses`: URL, token in the body, answers parsed, failures raised."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from streams.domain.retry import Verdict
from streams.errors import ApiError
from streams.meta.client import MetaEventsClient
from streams.meta.verdicts import classify

BASE = "https://graph.example.test"
URL = f"{BASE}/v25.0/123456789012345/events"
TOKEN = "meta-test-token"  # noqa: S105 - a test value, not a credential
BODY = {"data": [{"event_name": "Purchase"}], "test_event_code": "TEST1"}


@pytest.fixture
def client() -> MetaEventsClient:
    return MetaEventsClient(BASE + "/", "v25.0", "123456789012345", TOKEN, timeout=0.5)


@responses.activate
def test_posts_to_the_dataset_events_edge_with_the_token_in_the_body(
    client: MetaEventsClient,
) -> None:
    responses.post(URL, json={"events_received": 1, "messages": [], "fbtrace_id": "T1"})
    resp = client.send(BODY)
    assert resp.http_status == 200 and resp.events_received == 1 and resp.error is None
    assert resp.fbtrace_id == "T1"
    sent = responses.calls[0].request
    assert sent.url == URL  # no token in the URL
    assert json.loads(sent.body) == {**BODY, "access_token": TOKEN}
    assert sent.headers["Content-Type"] == "application/json"
    assert client.path == "/v25.0/123456789012345/events"


@responses.activate
def test_graph_error_envelope_is_returned_not_raised(client: MetaEventsClient) -> None:
    responses.post(
        URL,
        status=400,
        json={
            "error": {
                "message": "Invalid parameter",
                "type": "OAuthException",
                "code": 100,
                "error_subcode": 2804003,
                "error_user_title": "Event Timestamp Too Old",
                "fbtrace_id": "T2",
            }
        },
    )
    resp = client.send(BODY)
    assert resp.error is not None and resp.error.code == 100 and resp.error.subcode == 2804003
    assert resp.fbtrace_id == "T2"
    assert "Event Timestamp Too Old" in resp.message
    verdict = classify(resp.http_status, resp.error, resp.events_received, 1)
    assert verdict.verdict is Verdict.REJECTED


@responses.activate
def test_answer_without_json_has_neither_count_nor_error(client: MetaEventsClient) -> None:
    responses.post(URL, status=502, body="<html>Bad Gateway</html>")
    resp = client.send(BODY)
    assert resp.events_received is None and resp.error is None
    assert resp.body.startswith("<html>")
    assert resp.message == "HTTP 502 without a JSON answer"


@responses.activate
def test_timeout_raises_api_error_without_status(client: MetaEventsClient) -> None:
    responses.post(URL, body=requests.Timeout("slow"))
    with pytest.raises(ApiError, match="timed out after 0.5s") as info:
        client.send(BODY)
    assert info.value.status_code is None


@responses.activate
def test_connection_error_raises_api_error(client: MetaEventsClient) -> None:
    responses.post(URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ApiError, match="unreachable: ConnectionError"):
        client.send(BODY)


@responses.activate
def test_token_never_in_the_error_message(client: MetaEventsClient) -> None:
    responses.post(URL, body=requests.ConnectionError(f"refused {URL}"))
    with pytest.raises(ApiError) as info:
        client.send(BODY)
    assert TOKEN not in str(info.value)


@responses.activate
def test_boolean_events_received_is_not_a_count(client: MetaEventsClient) -> None:
    responses.post(URL, json={"events_received": True})
    assert client.send(BODY).events_received is None
