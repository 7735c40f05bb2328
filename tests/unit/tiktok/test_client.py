"""TikTokEventsClient against the standalone Events API sandbox (and `responses` for odd bodies)."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from streams.errors import ApiError
from streams.local.sandbox.config import SandboxConfig
from streams.local.sandbox.server import Sandbox
from streams.tiktok.client import TRACK_PATH, TikTokEventsClient, TrackResponse

TOKEN = "sandbox-test-token"  # noqa: S105 - the sandbox's configured token, not a credential
PIXEL = "PIXELTEST01"
CRM_SET = "CRMSETTEST01"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _event(**overrides: Any) -> dict[str, Any]:
    """A valid web event, built by hand from the contract (events-api.md)."""
    event: dict[str, Any] = {
        "event": "QualifiedLead",
        "event_time": int(time.time()),
        "event_id": f"evt-{uuid.uuid4()}",
        "user": {
            "email": _sha("jane.doe@example.com"),
            "phone": _sha("+447700900123"),
            "ttclid": "E_C_P_test",
            "ip": "203.0.113.42",
            "user_agent": "Mozilla/5.0",
        },
        "page": {"url": "https://example.com/landing"},
    }
    event.update(overrides)
    return event


def _body(*events: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_source": "web",
        "event_source_id": PIXEL,
        "data": list(events),
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(
        SandboxConfig(
            access_tokens=frozenset({TOKEN}),
            pixel_codes=frozenset({PIXEL}),
            crm_event_set_ids=frozenset({CRM_SET}),
        ),
        port=0,
    )
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> None:
    if "sandbox" in request.fixturenames:
        box: Sandbox = request.getfixturevalue("sandbox")
        box.configure_faults(clear=True)
        box.reset()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[TikTokEventsClient]:
    c = TikTokEventsClient(sandbox.url, TOKEN, timeout=5.0)
    try:
        yield c
    finally:
        c.close()


def test_ok_returns_track_response(client: TikTokEventsClient, sandbox: Sandbox) -> None:
    event = _event()

    resp = client.track(_body(event))

    assert isinstance(resp, TrackResponse)
    assert resp.http_status == 200
    assert resp.code == 0
    assert resp.message == "OK"
    assert resp.request_id
    assert resp.data == {}
    accepted = sandbox.events(event_id=event["event_id"])
    assert len(accepted) == 1
    assert accepted[0]["event"] == "QualifiedLead"
    assert accepted[0]["event_source_id"] == PIXEL
    assert accepted[0]["user"]["email"] == _sha("jane.doe@example.com")


def test_crm_event_is_accepted(client: TikTokEventsClient, sandbox: Sandbox) -> None:
    event = _event(
        user={"email": _sha("jane.doe@example.com")},
        lead={"lead_id": "7312345678901234567", "lead_event_source": "hubspot"},
    )
    del event["page"]
    resp = client.track(_body(event, event_source="crm", event_source_id=CRM_SET))
    assert resp.code == 0
    assert sandbox.events(event_source="crm")[0]["lead"]["lead_id"] == "7312345678901234567"


def test_partial_success_lists_failed_events(client: TikTokEventsClient, sandbox: Sandbox) -> None:
    good = _event()
    bad = _event(properties={"value": 10.0, "currency": "EURO"})

    resp = client.track(_body(good, bad))

    assert resp.http_status == 200
    assert resp.code == 20001
    assert "data.1.properties.currency" in resp.message
    failed = resp.data["failed_events"]
    assert len(failed) == 1
    assert failed[0]["index"] == 1
    assert failed[0]["path"] == "data.1.properties.currency"
    assert [e["event_id"] for e in sandbox.events()] == [good["event_id"]]


def test_every_event_invalid_is_an_error_code_in_http_200(client: TikTokEventsClient) -> None:
    resp = client.track(_body(_event(event_time=int(time.time() * 1000))))
    assert resp.http_status == 200
    assert resp.code == 40002
    assert resp.message.startswith("data.0.event_time")


def test_unhashed_email_is_40062(client: TikTokEventsClient) -> None:
    resp = client.track(_body(_event(user={"email": "jane.doe@example.com"})))
    assert (resp.http_status, resp.code) == (200, 40062)
    assert "data.0.user.email" in resp.message


def test_unknown_pixel_is_40001(client: TikTokEventsClient) -> None:
    resp = client.track(_body(_event(), event_source_id="NOTMYPIXEL"))
    assert (resp.http_status, resp.code) == (200, 40001)


def test_http_503_raises_api_error_with_status(
    client: TikTokEventsClient, sandbox: Sandbox
) -> None:
    sandbox.configure_faults(http_503=1.0)

    with pytest.raises(ApiError, match="HTTP 503") as info:
        client.track(_body(_event()))

    assert info.value.status_code == 503
    assert info.value.code is None
    assert sandbox.events() == []


def test_http_502_raises_api_error_with_status(
    client: TikTokEventsClient, sandbox: Sandbox
) -> None:
    sandbox.configure_faults(http_502=1.0)
    with pytest.raises(ApiError) as info:
        client.track(_body(_event()))
    assert info.value.status_code == 502


def test_timeout_raises_api_error_without_status(sandbox: Sandbox) -> None:
    sandbox.configure_faults(timeout=1.0, timeout_seconds=1.0)
    client = TikTokEventsClient(sandbox.url, TOKEN, timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(ApiError, match="timed out") as info:
            client.track(_body(_event()))
    finally:
        client.close()

    assert time.monotonic() - started < 0.9
    assert info.value.status_code is None
    assert info.value.code is None


def test_connection_refused_raises_api_error_without_status() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = TikTokEventsClient(f"http://127.0.0.1:{port}", TOKEN, timeout=1.0)
    with pytest.raises(ApiError, match="unreachable") as info:
        client.track(_body(_event()))
    assert info.value.status_code is None


def test_injected_auth_error_is_40105_in_http_200(
    client: TikTokEventsClient, sandbox: Sandbox
) -> None:
    sandbox.configure_faults(auth_error=True)

    resp = client.track(_body(_event()))

    assert isinstance(resp, TrackResponse)
    assert (resp.http_status, resp.code) == (200, 40105)
    assert sandbox.events() == []


def test_server_error_and_throttle_codes_come_back_as_responses(
    client: TikTokEventsClient, sandbox: Sandbox
) -> None:
    sandbox.configure_faults(server_error=1.0)
    assert client.track(_body(_event())).code == 50000
    sandbox.configure_faults(server_error=0.0, throttle=1.0)
    assert client.track(_body(_event())).code == 40100


def test_access_token_header_is_what_authenticates(sandbox: Sandbox) -> None:
    wrong = TikTokEventsClient(sandbox.url, "not-the-token", timeout=5.0)
    bearer = TikTokEventsClient(sandbox.url, f"Bearer {TOKEN}", timeout=5.0)
    right = TikTokEventsClient(sandbox.url, TOKEN, timeout=5.0)
    try:
        wrong_resp = wrong.track(_body(_event()))
        bearer_resp = bearer.track(_body(_event()))
        right_resp = right.track(_body(_event()))
    finally:
        for c in (wrong, bearer, right):
            c.close()

    assert (wrong_resp.http_status, wrong_resp.code) == (200, 40105)
    assert wrong_resp.message == "Invalid access token"
    assert bearer_resp.code == 40105
    assert "without 'Bearer'" in bearer_resp.message
    assert right_resp.code == 0
    assert len(sandbox.events()) == 1


def test_empty_token_is_40104(sandbox: Sandbox) -> None:
    client = TikTokEventsClient(sandbox.url, "", timeout=5.0)
    try:
        assert client.track(_body(_event())).code == 40104
    finally:
        client.close()


def test_connection_is_reused(client: TikTokEventsClient, sandbox: Sandbox) -> None:
    codes = [client.track(_body(_event())).code for _ in range(3)]

    stats = sandbox.stats()
    assert codes == [0, 0, 0]
    assert stats["requests"] == 3
    assert stats["connections"] == 1
    assert stats["accepted"] == 3


def test_base_url_trailing_slash(sandbox: Sandbox) -> None:
    client = TikTokEventsClient(sandbox.url + "/", TOKEN, timeout=5.0)
    try:
        assert client.track(_body(_event())).code == 0
    finally:
        client.close()


def test_nan_in_payload_is_refused_before_sending(
    client: TikTokEventsClient, sandbox: Sandbox
) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        client.track(_body(_event(properties={"value": float("nan"), "currency": "EUR"})))
    assert sandbox.stats()["requests"] == 0


def test_uses_the_given_session(sandbox: Sandbox) -> None:
    session = requests.Session()
    client = TikTokEventsClient(sandbox.url, TOKEN, session=session)
    try:
        assert client.track(_body(_event())).code == 0
        assert session.headers["Content-Type"] == "application/json"
    finally:
        client.close()


# --- bodies the sandbox never sends, through `responses` --------------------------------------

FAKE = "https://events.example.test"


@responses.activate
def test_2xx_without_envelope_raises_with_status() -> None:
    responses.post(FAKE + TRACK_PATH, body="<html>ok</html>", status=200)
    client = TikTokEventsClient(FAKE, TOKEN)
    with pytest.raises(ApiError, match="without a JSON envelope") as info:
        client.track(_body(_event()))
    assert info.value.status_code == 200
    assert info.value.code is None


@responses.activate
def test_2xx_with_non_integer_code_raises() -> None:
    responses.post(FAKE + TRACK_PATH, json={"code": "0", "message": "OK"}, status=200)
    with pytest.raises(ApiError) as info:
        TikTokEventsClient(FAKE, TOKEN).track(_body(_event()))
    assert info.value.status_code == 200


@responses.activate
def test_4xx_with_envelope_is_returned_with_the_api_message() -> None:
    responses.post(
        FAKE + TRACK_PATH,
        json={"code": 40002, "message": "bad", "request_id": "REQ-1", "data": {}},
        status=400,
    )
    resp = TikTokEventsClient(FAKE, TOKEN).track(_body(_event()))
    assert resp == TrackResponse(400, 40002, "bad", "REQ-1", {})  # the message, not "HTTP 400"
    assert '"message": "bad"' in resp.body


@responses.activate
def test_4xx_without_envelope_names_status_and_path_and_keeps_the_body() -> None:
    responses.post(FAKE + TRACK_PATH, body="<html>404 Not Found</html>", status=404)
    with pytest.raises(ApiError, match=r"HTTP 404 at /open_api/v1.3/event/track/") as info:
        TikTokEventsClient(FAKE, TOKEN).track(_body(_event()))
    assert (info.value.status_code, info.value.code) == (404, None)
    assert info.value.body == "<html>404 Not Found</html>"


@responses.activate
def test_request_id_falls_back_to_log_id_header_and_data_defaults_to_empty() -> None:
    responses.post(
        FAKE + TRACK_PATH,
        json={"code": 0, "message": "OK", "data": None},
        headers={"X-Tt-Logid": "LOGID-9"},
        status=200,
    )
    resp = TikTokEventsClient(FAKE, TOKEN).track(_body(_event()))
    assert resp == TrackResponse(200, 0, "OK", "LOGID-9", {})


@responses.activate
def test_request_sends_raw_token_and_compact_json() -> None:
    responses.post(FAKE + TRACK_PATH, json={"code": 0, "message": "OK", "request_id": "r"})
    TikTokEventsClient(FAKE + "/", TOKEN).track({"event_source": "web", "data": []})
    sent = responses.calls[0].request
    assert sent.url == FAKE + TRACK_PATH
    assert sent.headers["Access-Token"] == TOKEN
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.body == b'{"event_source":"web","data":[]}'
