"""Tests of the local Meta Conversions API sandbox, over real HTTP on a free port.

Events are built by hand from meta-capi.md, never by Leadstream's payload builder.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from streams.local.meta_sandbox.server import (
    FaultSettings,
    MetaSandbox,
    SandboxConfig,
)

TOKEN = "meta-tok"  # noqa: S105  # sandbox test token
PIXEL = "123456789012345"
VERSION = "v25.0"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EM = hashlib.sha256(b"jane.doe@example.com").hexdigest()
PH = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"  # 447700900123
PH_PLUS = hashlib.sha256(b"+447700900123").hexdigest()
LEAD_ID = 525645896321548


@dataclass
class Api:
    sandbox: MetaSandbox
    session: requests.Session = field(default_factory=requests.Session)

    def post(
        self, body: dict[str, Any], *, pixel: str = PIXEL, token: str | None = TOKEN
    ) -> requests.Response:
        payload = dict(body)
        if token is not None:
            payload["access_token"] = token
        return self.session.post(
            f"{self.sandbox.url}/{VERSION}/{pixel}/events", json=payload, timeout=5
        )

    def send(self, *events: dict[str, Any], **extra: Any) -> requests.Response:
        return self.post({"data": list(events), **extra})


def web_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "Schedule",
        "event_time": int(NOW.timestamp()) - 60,
        "event_id": "evt-1",
        "action_source": "website",
        "event_source_url": "https://example.com/book",
        "user_data": {
            "em": [EM],
            "ph": [PH],
            "fbc": "fb.1.1740000000000.IwAR2abc",
            "fbp": "fb.1.1740000000000.1234567890",
            "client_ip_address": "203.0.113.42",
            "client_user_agent": "Mozilla/5.0",
        },
        "data_processing_options": [],
    }
    event.update(overrides)
    return event


def crm_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "QualifiedLead",
        "event_time": int(NOW.timestamp()) - 60,
        "event_id": "lead-1:QualifiedLead",
        "action_source": "system_generated",
        "user_data": {"lead_id": LEAD_ID},
        "custom_data": {"event_source": "crm", "lead_event_source": "hubspot"},
    }
    event.update(overrides)
    return event


def with_user(**user: Any) -> dict[str, Any]:
    return web_event(user_data={**web_event()["user_data"], **user})


@pytest.fixture
def api() -> Iterator[Api]:
    config = SandboxConfig(
        access_tokens=frozenset({TOKEN}),
        pixel_ids=frozenset({PIXEL}),
        expired_tokens=frozenset({"old-tok"}),
        clock=lambda: NOW,
    )
    with MetaSandbox(config) as sandbox:
        yield Api(sandbox)


def error_of(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code != 200, resp.text
    return dict(resp.json()["error"])


def test_valid_events_are_received_and_recorded(api: Api) -> None:
    resp = api.send(web_event(), crm_event())
    assert resp.status_code == 200
    body = resp.json()
    assert body["events_received"] == 2 and body["messages"] == [] and body["fbtrace_id"]
    assert [e["event_name"] for e in api.sandbox.events()] == ["Schedule", "QualifiedLead"]
    assert api.sandbox.events(event_name="Schedule")[0]["pixel_id"] == PIXEL


def test_ledger_merges_by_event_name_and_event_id(api: Api) -> None:
    api.send(web_event())
    api.send(web_event())
    api.send(web_event(event_name="Purchase", custom_data={"value": 5, "currency": "EUR"}))
    stats = api.sandbox.stats()
    assert stats["accepted"] == 2 and stats["deduplicated"] == 1
    assert len(api.sandbox.events(event_id="evt-1")) == 2


def test_test_events_are_kept_apart(api: Api) -> None:
    api.send(web_event(), test_event_code="TEST1")
    api.send(web_event())
    assert api.sandbox.stats()["test"] == {"accepted": 1, "deduplicated": 0}
    assert api.sandbox.stats()["accepted"] == 1
    assert len(api.sandbox.events(test="true")) == 1


@pytest.mark.parametrize("where", ["body", "query", "bearer"], ids=["body", "query", "bearer"])
def test_token_is_accepted_in_each_documented_place(api: Api, where: str) -> None:
    url = f"{api.sandbox.url}/{VERSION}/{PIXEL}/events"
    body: dict[str, Any] = {"data": [web_event()]}
    headers: dict[str, str] = {}
    if where == "body":
        body["access_token"] = TOKEN
    elif where == "query":
        url += f"?access_token={TOKEN}"
    else:
        headers["Authorization"] = f"Bearer {TOKEN}"
    assert requests.post(url, json=body, headers=headers, timeout=5).status_code == 200


@pytest.mark.parametrize(("token", "subcode"), [(None, None), ("wrong", None), ("old-tok", 463)])
def test_bad_tokens_answer_190(api: Api, token: str | None, subcode: int | None) -> None:
    error = error_of(api.post({"data": [web_event()]}, token=token))
    assert error["code"] == 190 and error.get("error_subcode") == subcode


def test_unknown_dataset_answers_100_33(api: Api) -> None:
    error = error_of(api.post({"data": [web_event()]}, pixel="999"))
    assert (error["code"], error["error_subcode"]) == (100, 33)


def test_an_old_event_fails_the_whole_request(api: Api) -> None:
    old = web_event(event_id="evt-old", event_time=int((NOW - timedelta(days=8)).timestamp()))
    error = error_of(api.send(web_event(), old))
    assert (error["code"], error["error_subcode"]) == (100, 2804003)
    assert error["error_user_title"] == "Event Timestamp Too Old"
    assert api.sandbox.events() == []
    assert api.sandbox.stats()["rejected"] == {"100": 2}


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (web_event(event_source_url=None), "event_source_url"),
        (with_user(client_user_agent=None), "client_user_agent"),
        (web_event(action_source="web"), "action_source"),
        (web_event(event_time="1700000000"), "event_time"),
        (web_event(event_time=int(NOW.timestamp()) + 3600), "future"),
        (with_user(em=["Jane.Doe@example.com"]), "hashed"),
        (with_user(ph=[PH_PLUS]), "'+'"),
        (with_user(external_id=["crm-user-42"]), "hashed"),
        (with_user(fbc=EM), "must not be hashed"),
        (with_user(client_ip_address=EM), "must not be hashed"),
        (with_user(fbc="IwAR2abc"), "fbc"),
        (with_user(client_ip_address="not-an-ip"), "client_ip_address"),
        (web_event(user_data={"client_user_agent": "Mozilla/5.0"}), "customer information"),
        (web_event(event_name="Purchase"), "Purchase"),
        (web_event(custom_data={"value": "5", "currency": "EUR"}), "value"),
        (web_event(custom_data={"value": 5, "currency": "eur"}), "currency"),
        (web_event(data_processing_options=["CCPA"]), "data_processing_options"),
        (web_event(data_processing_options_country=1), "only with"),
        (web_event(unknown=1), "Unknown event parameter"),
        (crm_event(action_source="other"), "system_generated"),
        (crm_event(user_data={"lead_id": 12345}), "lead_id"),
        (crm_event(user_data={"lead_id": EM}), "lead_id"),
        (crm_event(custom_data={"event_source": "crm"}), "lead_event_source"),
        (crm_event(custom_data={"lead_event_source": "x"}), "event_source 'crm'"),
    ],
)
def test_invalid_events_reject_the_request_with_code_100(
    api: Api, event: dict[str, Any], needle: str
) -> None:
    event = {k: v for k, v in event.items() if v is not None}
    event["user_data"] = {k: v for k, v in event["user_data"].items() if v is not None}
    error = error_of(api.send(web_event(event_id="good"), event))
    assert error["code"] == 100
    assert needle in error["message"], error["message"]
    assert api.sandbox.events() == []


def test_ldu_with_country_and_state_is_valid(api: Api) -> None:
    event = web_event(
        data_processing_options=["LDU"],
        data_processing_options_country=0,
        data_processing_options_state=0,
    )
    assert api.send(event).status_code == 200


def test_lead_id_as_digit_string_is_valid(api: Api) -> None:
    assert api.send(crm_event(user_data={"lead_id": str(LEAD_ID)})).status_code == 200


def _stage(name: str, seconds_ago: int) -> dict[str, Any]:
    event = crm_event(
        event_name=name, event_id=f"lead-1:{name}", event_time=int(NOW.timestamp()) - seconds_ago
    )
    if name == "Purchase":
        event["custom_data"] = {**event["custom_data"], "value": 990.0, "currency": "EUR"}
    return event


def test_conversion_leads_stages_in_order_raise_no_warning(api: Api) -> None:
    assert api.send(_stage("Lead", 300), _stage("QualifiedLead", 200)).status_code == 200
    assert api.send(_stage("Purchase", 100)).status_code == 200
    assert api.sandbox.stats()["crm_warnings"] == 0
    assert all("warnings" not in e for e in api.sandbox.events())


def test_a_skipped_stage_and_a_time_before_the_lead_are_accepted_with_warnings(api: Api) -> None:
    """Meta does not reject these; it may discard them. The sandbox says so on the record."""
    assert api.send(_stage("Lead", 300), _stage("Purchase", 100)).status_code == 200
    assert api.send(_stage("QualifiedLead", 400)).status_code == 200
    warned = {e["event_name"]: e.get("warnings") for e in api.sandbox.events()}
    assert warned == {
        "Lead": None,
        "Purchase": ["stage Purchase arrived before QualifiedLead"],
        "QualifiedLead": ["stage QualifiedLead has an event_time before the lead's creation"],
    }
    assert api.sandbox.stats()["crm_warnings"] == 2
    api.sandbox.reset()
    assert api.sandbox.stats()["crm_warnings"] == 0


def test_a_lead_without_its_first_stage_is_warned(api: Api) -> None:
    assert api.send(_stage("QualifiedLead", 100)).status_code == 200
    [event] = api.sandbox.events()
    assert event["warnings"] == ["stage QualifiedLead arrived before Lead"]


@pytest.mark.parametrize(
    "body", [{}, {"data": []}, {"data": "x"}, {"data": [1]}, {"data": [{}], "foo": 1}]
)
def test_invalid_envelopes_answer_100(api: Api, body: dict[str, Any]) -> None:
    assert error_of(api.post(body))["code"] == 100


def test_more_than_1000_events_is_refused(api: Api) -> None:
    events = [web_event(event_id=f"e{i}") for i in range(1001)]
    assert error_of(api.send(*events))["code"] == 100


def test_auth_fault_answers_190_until_cleared(api: Api) -> None:
    api.sandbox.configure_faults(auth_error=True)
    assert error_of(api.send(web_event()))["code"] == 190
    api.sandbox.configure_faults(auth_error=False)
    assert api.send(web_event()).status_code == 200
    assert api.sandbox.stats()["faults_by_kind"] == {"auth_error": 1}


@pytest.mark.parametrize("code", [4, 17, 80003])
def test_rate_limit_fault(api: Api, code: int) -> None:
    api.sandbox.configure_faults(rate_limit=1.0, rate_limit_code=code)
    error = error_of(api.send(web_event()))
    assert error["code"] == code and error["is_transient"] is True


def test_transient_fault_is_a_500_with_code_2(api: Api) -> None:
    api.sandbox.configure_faults(transient=1.0)
    resp = api.send(web_event())
    assert resp.status_code == 500 and resp.json()["error"]["code"] == 2


@pytest.mark.parametrize(("fault", "status"), [("http_502", 502), ("http_503", 503)])
def test_html_faults(api: Api, fault: str, status: int) -> None:
    api.sandbox.configure_faults(**{fault: 1.0})
    resp = api.send(web_event())
    assert resp.status_code == status and resp.headers["Content-Type"].startswith("text/html")
    assert api.sandbox.events() == []


def test_http_error_and_413_faults(api: Api) -> None:
    api.sandbox.configure_faults(http_error=404)
    assert api.send(web_event()).status_code == 404
    api.sandbox.configure_faults(clear=True, max_events_413=1)
    assert api.send(web_event(), web_event(event_id="e2")).status_code == 413
    assert api.send(web_event()).status_code == 200


def test_timeout_fault_hangs_then_answers_504(api: Api) -> None:
    api.sandbox.configure_faults(timeout=1.0, timeout_seconds=0.2)
    assert api.send(web_event()).status_code == 504


def test_fault_control_endpoint_validates(api: Api) -> None:
    url = f"{api.sandbox.url}/_sandbox/faults"
    assert requests.post(url, json={"transient": 2}, timeout=5).status_code == 400
    assert requests.post(url, json={"bogus": 1}, timeout=5).status_code == 400
    assert requests.post(url, json={"rate_limit_code": 5}, timeout=5).status_code == 400
    ok = requests.post(url, json={"transient": 0.5, "expire_token": TOKEN}, timeout=5)
    assert ok.json()["transient"] == 0.5 and TOKEN in ok.json()["expired_tokens"]
    assert requests.get(url, timeout=5).json()["transient"] == 0.5


def test_expired_token_by_control(api: Api) -> None:
    api.sandbox.configure_faults(expire_token=TOKEN)
    assert error_of(api.send(web_event()))["error_subcode"] == 463


def test_stats_by_prefix_and_reset(api: Api) -> None:
    api.send(web_event(event_id="a-1"), web_event(event_id="b-1"))
    url = api.sandbox.url
    stats = requests.get(f"{url}/_sandbox/stats?prefix=a-", timeout=5).json()
    assert stats["accepted"] == 1 and stats["prefix"] == "a-"
    assert stats["max_events_per_request"] == 1
    assert requests.get(f"{url}/_sandbox/events?event_id=b-1", timeout=5).json()[0]["event_id"]
    assert requests.get(f"{url}/_sandbox/events?nope=1", timeout=5).status_code == 400
    assert requests.post(f"{url}/_sandbox/reset", timeout=5).json() == {"ok": True}
    assert api.sandbox.events() == [] and api.sandbox.stats()["requests"] == 0


def test_unknown_paths_and_methods(api: Api) -> None:
    url = api.sandbox.url
    assert requests.get(f"{url}/nope", timeout=5).status_code == 404
    assert requests.get(f"{url}/{VERSION}/{PIXEL}/events", timeout=5).status_code == 405
    assert requests.post(f"{url}/_sandbox/stats", timeout=5).status_code == 405


def test_non_json_body_answers_100(api: Api) -> None:
    resp = requests.post(
        f"{api.sandbox.url}/{VERSION}/{PIXEL}/events?access_token={TOKEN}",
        data=b"data=[]",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert error_of(resp)["code"] == 100


def test_fault_settings_reject_bad_shares() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultSettings(transient=0.6, rate_limit=0.6)
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultSettings(http_502=-0.1)


def test_module_runs_with_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.local.meta_sandbox", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0 and "Meta Conversions API sandbox" in result.stdout


def test_sandbox_imports_nothing_from_the_client_side() -> None:
    probe = (
        "import sys, streams.local.meta_sandbox.server as s;"
        "print(sorted(m for m in sys.modules if m.startswith('streams')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == (  # httpd, ledger: the plumbing the local servers share
        "['streams', 'streams.local', 'streams.local.httpd', 'streams.local.ledger', "
        "'streams.local.meta_sandbox', "
        "'streams.local.meta_sandbox.config', 'streams.local.meta_sandbox.crm', "
        "'streams.local.meta_sandbox.engine', "
        "'streams.local.meta_sandbox.server', 'streams.local.meta_sandbox.validation']"
    )
