"""Tests of the local TikTok Events API sandbox, over real HTTP on a free port."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from streams.local.sandbox.config import FaultSettings, SandboxConfig
from streams.local.sandbox.server import Sandbox, _build_parser, main

TOKEN = "tok-good"  # noqa: S105  # sandbox test token
OTHER_TOKEN = "tok-other"  # noqa: S105  # sandbox test token
PIXEL = "PIXEL1"
CRM_SET = "7301234567890123456"
TRACK = "/open_api/v1.3/event/track/"
EMAIL_HASH = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"
PHONE_HASH = "a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436"
EXTERNAL_HASH = "27aadbc592973f043afc981802d968ec50891cfa85970a529963b256957a31de"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    @property
    def seconds(self) -> int:
        return int(self.now.timestamp())


@dataclass
class Api:
    """A started sandbox plus helpers to talk to it."""

    sandbox: Sandbox
    clock: FakeClock
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return self.sandbox.url

    def track(self, body: Any, token: str | None = TOKEN, timeout: float = 5) -> requests.Response:
        headers = {} if token is None else {"Access-Token": token}
        return self.session.post(self.url + TRACK, json=body, headers=headers, timeout=timeout)

    def send(self, body: Any, token: str | None = TOKEN) -> dict[str, Any]:
        response = self.track(body, token)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        envelope: dict[str, Any] = response.json()
        assert set(envelope) == {"code", "message", "request_id", "data"}
        return envelope

    def stats(self, **params: str) -> dict[str, Any]:
        response = self.session.get(self.url + "/_sandbox/stats", params=params, timeout=5)
        result: dict[str, Any] = response.json()
        return result

    def events(self, **params: str) -> list[dict[str, Any]]:
        response = self.session.get(self.url + "/_sandbox/events", params=params, timeout=5)
        assert response.status_code == 200
        result: list[dict[str, Any]] = response.json()
        return result

    def faults(self, **settings: Any) -> requests.Response:
        return self.session.post(self.url + "/_sandbox/faults", json=settings, timeout=5)

    def web_event(self, **overrides: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": "Lead",
            "event_time": self.clock.seconds - 60,
            "event_id": "form-1:Lead",
            "user": {
                "email": EMAIL_HASH,
                "phone": [PHONE_HASH],
                "external_id": EXTERNAL_HASH,
                "ttclid": "E.C.P.abc123",
                "ttp": "2Xyz_ttp",
                "ip": "203.0.113.7",
                "user_agent": "Mozilla/5.0",
                "locale": "en-GB",
            },
            "properties": {"value": 12.5, "currency": "GBP", "order_id": "o-1"},
            "page": {"url": "https://example.com/form?utm=1", "referrer": "https://tiktok.com/"},
            "limited_data_use": False,
        }
        event.update(overrides)
        return event

    def crm_event(self, **overrides: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": "QualifiedLead",
            "event_time": self.clock.seconds - 60,
            "event_id": "lead-8841:QualifiedLead",
            "lead": {"lead_id": "7309876543210987654", "lead_event_source": "InHouseCRM"},
            "user": {"email": [EMAIL_HASH], "phone": [PHONE_HASH], "external_id": [EXTERNAL_HASH]},
            "properties": {"value": 250.0, "currency": "GBP"},
        }
        event.update(overrides)
        return event


def web_body(*events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"event_source": "web", "event_source_id": PIXEL, "data": list(events), **extra}


def crm_body(*events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"event_source": "crm", "event_source_id": CRM_SET, "data": list(events), **extra}


def start(clock: FakeClock, **config: Any) -> Sandbox:
    settings: dict[str, Any] = {
        "access_tokens": frozenset({TOKEN, OTHER_TOKEN}),
        "pixel_codes": frozenset({PIXEL}),
        "crm_event_set_ids": frozenset({CRM_SET}),
        "clock": clock,
    }
    settings.update(config)
    sandbox = Sandbox(SandboxConfig(**settings))
    sandbox.start()
    return sandbox


@pytest.fixture
def make_api() -> Iterator[Any]:
    started: list[Api] = []

    def factory(**config: Any) -> Api:
        clock = FakeClock()
        api = Api(start(clock, **config), clock)
        started.append(api)
        return api

    yield factory
    for api in started:
        api.session.close()
        api.sandbox.stop()


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Sandbox, FakeClock]]:
    clock = FakeClock()
    sandbox = start(clock)
    yield sandbox, clock
    sandbox.stop()


@pytest.fixture
def api(shared: tuple[Sandbox, FakeClock]) -> Iterator[Api]:
    """The module's sandbox, reset to a clean state for each test."""
    sandbox, clock = shared
    clock.now = NOW
    sandbox.configure_faults(clear=True)
    sandbox.reset()
    result = Api(sandbox, clock)
    yield result
    result.session.close()


# -- golden paths ---------------------------------------------------------------------------


def test_web_event_is_accepted_and_recorded(api: Api) -> None:
    envelope = api.send(web_body(api.web_event()))

    assert envelope["code"] == 0
    assert envelope["message"] == "OK"
    assert envelope["data"] == {}
    assert len(envelope["request_id"]) >= 20
    [record] = api.events()
    assert record["event"] == "Lead"
    assert record["event_id"] == "form-1:Lead"
    assert record["user"]["email"] == EMAIL_HASH
    assert record["event_source"] == "web"
    assert record["event_source_id"] == PIXEL
    assert record["test_event_code"] is None
    assert record["test_event"] is False
    assert record["request_id"] == envelope["request_id"]
    assert datetime.fromisoformat(record["received_at"]) == NOW


def test_crm_event_is_accepted(api: Api) -> None:
    envelope = api.send(crm_body(api.crm_event()))

    assert envelope["code"] == 0
    [record] = api.events()
    assert record["lead"]["lead_id"] == "7309876543210987654"
    assert record["event_source"] == "crm"
    assert api.stats()["accepted"] == 1


def test_request_ids_are_unique(api: Api) -> None:
    ids = {api.send(web_body(api.web_event(event_id=f"e{i}")))["request_id"] for i in range(20)}
    assert len(ids) == 20


def test_minimal_events_and_edge_values_are_accepted(api: Api) -> None:
    minimal = {"event": "Lead", "event_time": api.clock.seconds, "event_id": "m1"}
    envelope = api.send(
        web_body(
            {**minimal, "page": {"url": "http://localhost:8000/x"}},
            api.web_event(event_id="zero", properties={"value": 0, "currency": "EUR"}),
            api.web_event(event_id="unknown-field", custom_top_level={"anything": 1}),
            api.web_event(event_id="future", event_time=api.clock.seconds + 599),
            api.web_event(event_id="old", event_time=api.clock.seconds - 7 * 86400 + 1),
        )
    )
    assert envelope["code"] == 0, envelope["message"]
    assert api.send(crm_body(minimal | {"lead": {"lead_id": "1"}}))["code"] == 0
    assert api.stats()["accepted"] == 6


# -- auth, permission, request-level errors --------------------------------------------------


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, 40104), ("", 40104), ("nope", 40105), (f"Bearer {TOKEN}", 40105)],
)
def test_auth_errors(api: Api, token: str | None, code: int) -> None:
    envelope = api.send(web_body(api.web_event()), token=token)
    assert envelope["code"] == code
    assert api.events() == []


def test_bearer_prefix_message_explains(api: Api) -> None:
    assert "without 'Bearer'" in api.send(web_body(api.web_event()), f"Bearer {TOKEN}")["message"]


def test_expired_token_answers_40102_and_others_still_work(api: Api) -> None:
    response = api.faults(expire_token=TOKEN)
    assert response.status_code == 200
    assert response.json()["expired_tokens"] == [TOKEN]

    assert api.send(web_body(api.web_event()))["code"] == 40102
    assert api.send(web_body(api.web_event()), OTHER_TOKEN)["code"] == 0
    api.faults(expired_tokens=[])
    assert api.send(web_body(api.web_event(event_id="x")))["code"] == 0


@pytest.mark.parametrize(
    ("source", "source_id"),
    [("web", "UNKNOWNPIXEL"), ("web", CRM_SET), ("crm", PIXEL), ("app", "123"), ("offline", "9")],
)
def test_unknown_event_source_id_is_40001(api: Api, source: str, source_id: str) -> None:
    body = {"event_source": source, "event_source_id": source_id, "data": [api.crm_event()]}
    envelope = api.send(body)
    assert envelope["code"] == 40001
    assert source_id in envelope["message"]
    assert api.stats()["rejected"] == {"40001": 1}


def test_app_and_offline_ids_can_be_configured(make_api: Any) -> None:
    api = make_api(app_ids=frozenset({"APP1"}), offline_event_set_ids=frozenset({"OFF1"}))
    event = api.crm_event()
    del event["lead"]
    for source, source_id in (("app", "APP1"), ("offline", "OFF1")):
        body = {"event_source": source, "event_source_id": source_id, "data": [event]}
        assert api.send(body)["code"] == 0


def test_bad_json_is_40000(api: Api) -> None:
    response = api.session.post(
        api.url + TRACK,
        data=b"{not json",
        headers={"Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["code"] == 40000
    assert response.json()["message"].startswith("body: invalid JSON")


def test_nan_is_not_json(api: Api) -> None:
    response = api.session.post(
        api.url + TRACK,
        data=b'{"event_source": "web", "event_source_id": "PIXEL1", "data": [{"x": NaN}]}',
        headers={"Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.json()["code"] == 40000


def test_wrong_content_type_is_40000(api: Api) -> None:
    response = api.session.post(
        api.url + TRACK,
        data=b"{}",
        headers={"Access-Token": TOKEN, "Content-Type": "text/plain"},
        timeout=5,
    )
    assert response.json()["code"] == 40000
    assert "Content-Type" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"event_source_id": PIXEL, "data": [{}]}, "event_source: is required"),
        ({"event_source": "WEB", "event_source_id": PIXEL, "data": [{}]}, "event_source: "),
        ({"event_source": "web", "data": [{}]}, "event_source_id: is required"),
        ({"event_source": "web", "event_source_id": "", "data": [{}]}, "event_source_id: "),
        ({"event_source": "web", "event_source_id": PIXEL}, "data: is required"),
        ({"event_source": "web", "event_source_id": PIXEL, "data": []}, "data: must contain"),
        ({"event_source": "web", "event_source_id": PIXEL, "data": {}}, "data: must be an array"),
        (
            {"event_source": "web", "event_source_id": PIXEL, "test_event_code": 5, "data": [{}]},
            "test_event_code: ",
        ),
        ([1, 2], "body: must be a JSON object"),
    ],
)
def test_request_level_errors_are_40002_naming_the_path(api: Api, body: Any, message: str) -> None:
    envelope = api.send(body)
    assert envelope["code"] == 40002
    assert envelope["message"].startswith(message)


def test_more_than_1000_events_rejects_the_whole_request(api: Api) -> None:
    events = [api.web_event(event_id=f"e{i}") for i in range(1001)]
    envelope = api.send(web_body(*events))

    assert envelope["code"] == 40061
    assert envelope["message"].startswith("data: contains 1001 events")
    assert api.events() == []
    stats = api.stats()
    assert stats["rejected"] == {"40061": 1001}
    assert stats["max_events_per_request"] == 1001


def test_exactly_1000_events_are_accepted(api: Api) -> None:
    events = [api.web_event(event_id=f"e{i}") for i in range(1000)]
    assert api.send(web_body(*events))["code"] == 0
    assert api.stats()["accepted"] == 1000


# -- hashing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ({"email": "jane.doe@example.com"}, "data.1.user.email"),
        ({"email": [EMAIL_HASH, " jane.doe@example.com"]}, "data.1.user.email.1"),
        ({"phone": ["+447700900123"]}, "data.1.user.phone.0"),
        ({"external_id": "crm-user-42"}, "data.1.user.external_id"),
        ({"email": EMAIL_HASH.upper()}, "data.1.user.email"),
        ({"email": EMAIL_HASH[:-1]}, "data.1.user.email"),
    ],
)
def test_unhashed_pii_rejects_the_whole_request_with_40062(
    api: Api, user: dict[str, Any], path: str
) -> None:
    envelope = api.send(web_body(api.web_event(), api.web_event(event_id="2", user=user)))

    assert envelope["code"] == 40062
    assert envelope["message"].startswith(f"{path}: personal data is not hashed")
    assert api.events() == []
    assert api.stats()["rejected"] == {"40062": 2}


# -- per-event validation --------------------------------------------------------------------


def test_partial_success_names_each_rejected_event(api: Api) -> None:
    envelope = api.send(
        web_body(
            api.web_event(event_id="a"),
            api.web_event(event_id="b", properties={"value": -1}),
            api.web_event(event_id="c"),
            api.web_event(event_id="d", event_time=api.clock.seconds * 1000),
        )
    )

    assert envelope["code"] == 20001
    assert envelope["message"] == (
        "data.1.properties.value: must be a non-negative finite number; "
        "data.3.event_time: must be Unix seconds (the value looks like milliseconds)"
    )
    assert envelope["data"]["failed_events"] == [
        {
            "index": 1,
            "path": "data.1.properties.value",
            "reason": "must be a non-negative finite number",
            "code": 40002,
        },
        {
            "index": 3,
            "path": "data.3.event_time",
            "reason": "must be Unix seconds (the value looks like milliseconds)",
            "code": 40002,
        },
    ]
    assert [r["event_id"] for r in api.events()] == ["a", "c"]
    stats = api.stats()
    assert stats["accepted"] == 2
    assert stats["rejected"] == {"40002": 2}
    assert stats["requests_by_code"] == {"20001": 1}


def test_all_events_invalid_is_40002_with_the_first_path(api: Api) -> None:
    envelope = api.send(web_body(api.web_event(event="", event_id="a"), api.web_event(event_id="")))
    assert envelope["code"] == 40002
    assert envelope["message"] == "data.0.event: is required and must be a non-empty string"
    assert len(envelope["data"]["failed_events"]) == 2
    assert api.events() == []


HOUR = 3600


@pytest.mark.parametrize(
    ("kind", "overrides", "path"),
    [
        ("web", {"event": None}, "event"),
        ("web", {"event": "  "}, "event"),
        ("web", {"event_time": None}, "event_time"),
        ("web", {"event_time": "1767225600"}, "event_time"),
        ("web", {"event_time": 1767225600.0}, "event_time"),
        ("web", {"event_time": True}, "event_time"),
        ("web", {"event_time": 1767225600123}, "event_time"),
        ("web", {"event_time": "old"}, "event_time"),
        ("web", {"event_time": "future"}, "event_time"),
        ("web", {"event_id": None}, "event_id"),
        ("web", {"event_id": 42}, "event_id"),
        ("web", {"user": "x"}, "user"),
        ("web", {"user": {"email": 5}}, "user.email"),
        ("web", {"user": {"email": []}}, "user.email"),
        ("web", {"user": {"phone": [7]}}, "user.phone.0"),
        ("web", {"user": {"ttclid": 123}}, "user.ttclid"),
        ("web", {"user": {"ip": "999.1.1.1"}}, "user.ip"),
        ("web", {"user": {"locale": "english please"}}, "user.locale"),
        ("web", {"properties": {"value": "10"}}, "properties.value"),
        ("web", {"properties": {"value": True}}, "properties.value"),
        ("web", {"properties": {"value": -0.01}}, "properties.value"),
        ("web", {"properties": {"value": 1, "currency": "gbp"}}, "properties.currency"),
        ("web", {"properties": {"value": 1, "currency": "XYZ"}}, "properties.currency"),
        ("web", {"properties": {"value": 1, "currency": "GBPX"}}, "properties.currency"),
        ("web", {"properties": {"order_id": 1234}}, "properties.order_id"),
        ("web", {"properties": {"content_id": 99}}, "properties.content_id"),
        (
            "web",
            {"properties": {"contents": [{"content_id": 1}]}},
            "properties.contents.0.content_id",
        ),
        ("web", {"properties": {"content_type": "thing"}}, "properties.content_type"),
        ("web", {"page": None}, "page.url"),
        ("web", {"page": {"referrer": "https://a.example/"}}, "page.url"),
        ("web", {"page": {"url": "ftp://example.com/"}}, "page.url"),
        ("web", {"page": {"url": "example.com/form"}}, "page.url"),
        ("web", {"page": {"url": "https://example.com/", "referrer": 3}}, "page.referrer"),
        ("web", {"limited_data_use": "no"}, "limited_data_use"),
        ("crm", {"lead": None}, "lead.lead_id"),
        ("crm", {"lead": {"lead_event_source": "CRM"}}, "lead.lead_id"),
        ("crm", {"lead": {"lead_id": 7309876543210987654}}, "lead.lead_id"),
        ("crm", {"lead": {"lead_id": "1", "lead_event_source": 5}}, "lead.lead_event_source"),
        ("crm", {"user": {"email": [EMAIL_HASH], "ttclid": "E.C.P.x"}}, "user.ttclid"),
        ("crm", {"user": {"ttp": "abc"}}, "user.ttp"),
        ("crm", {"user": {"ip": "203.0.113.7"}}, "user.ip"),
        ("crm", {"user": {"user_agent": "Mozilla/5.0"}}, "user.user_agent"),
        ("crm", {"user": {"lead_id": "7309876543210987654"}}, "user.lead_id"),
    ],
)
def test_invalid_event_is_rejected_alone(
    api: Api, kind: str, overrides: dict[str, Any], path: str
) -> None:
    if overrides.get("event_time") == "old":
        overrides = {"event_time": api.clock.seconds - 7 * 24 * HOUR - 1}
    elif overrides.get("event_time") == "future":
        overrides = {"event_time": api.clock.seconds + 601}
    make, wrap = (api.web_event, web_body) if kind == "web" else (api.crm_event, crm_body)
    bad = make(event_id="bad")
    for key, value in overrides.items():
        if value is None:
            bad.pop(key)
        else:
            bad[key] = value
    envelope = api.send(wrap(make(event_id="good"), bad))

    assert envelope["code"] == 20001, envelope
    assert envelope["message"].startswith(f"data.1.{path}: ")
    assert [f["index"] for f in envelope["data"]["failed_events"]] == [1]
    assert [r["event_id"] for r in api.events()] == ["good"]


def test_non_object_event_is_rejected(api: Api) -> None:
    envelope = api.send(web_body(api.web_event(), "not an event"))  # type: ignore[arg-type]
    assert envelope["code"] == 20001
    assert envelope["message"] == "data.1: must be an object"


# -- dedup -----------------------------------------------------------------------------------


def test_same_key_twice_counts_once(api: Api) -> None:
    assert api.send(web_body(api.web_event()))["code"] == 0
    assert api.send(web_body(api.web_event(properties={"value": 99})))["code"] == 0
    assert api.send(web_body(api.web_event(event="CompleteRegistration")))["code"] == 0

    stats = api.stats()
    assert stats["accepted"] == 2
    assert stats["deduplicated"] == 1
    assert stats["duplicates"] == 1
    assert stats["events_received"] == 3
    lead_records = api.events(event="Lead")
    assert len(lead_records) == 1
    assert lead_records[0]["properties"]["value"] == 12.5  # the first copy is kept


def test_duplicates_within_one_request_are_merged(api: Api) -> None:
    envelope = api.send(web_body(api.web_event(), api.web_event(), api.web_event()))
    assert envelope["code"] == 0
    stats = api.stats()
    assert (stats["accepted"], stats["deduplicated"], stats["duplicates"]) == (1, 2, 1)


def test_test_events_are_kept_apart_from_live_events(api: Api) -> None:
    api.send(web_body(api.web_event(), test_event_code="TEST123"))
    api.send(web_body(api.web_event(), test_event_code="TEST123"))
    api.send(web_body(api.web_event()))

    stats = api.stats()
    assert stats["accepted"] == 1
    assert stats["deduplicated"] == 0
    assert stats["test"] == {"accepted": 1, "deduplicated": 1, "duplicates": 1}
    [test_record] = api.events(test="true")
    assert test_record["test_event_code"] == "TEST123"
    assert test_record["test_event"] is True
    [live_record] = api.events(test="false")
    assert live_record["test_event_code"] is None
    assert len(api.events(test_event_code="TEST123")) == 1
    assert len(api.events(test_event_code="")) == 1


def test_same_key_after_48_hours_counts_again(api: Api) -> None:
    api.send(web_body(api.web_event()))
    api.clock.now = NOW + timedelta(hours=47, minutes=59)
    api.send(web_body(api.web_event()))
    api.clock.now = NOW + timedelta(hours=48, minutes=1)
    api.send(web_body(api.web_event()))

    stats = api.stats()
    assert (stats["accepted"], stats["deduplicated"]) == (2, 1)
    assert len(api.events(event_id="form-1:Lead")) == 2


def test_concurrent_requests_are_counted_exactly(api: Api) -> None:
    def worker(n: int) -> None:
        with requests.Session() as session:
            for i in range(10):
                body = web_body(api.web_event(event_id=f"k{i}"), api.web_event(event_id=f"w{n}"))
                response = session.post(
                    api.url + TRACK, json=body, headers={"Access-Token": TOKEN}, timeout=5
                )
                assert response.json()["code"] == 0

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = api.stats()
    assert stats["requests"] == 80
    assert stats["events_received"] == 160
    assert stats["accepted"] == 18
    assert stats["deduplicated"] == 142
    assert stats["duplicates"] == 18


# -- stats, events, reset --------------------------------------------------------------------


def test_stats_shape_and_invariant(api: Api) -> None:
    api.send(web_body(api.web_event(event_id="a"), api.web_event(event_id="a")))
    api.send(web_body(api.web_event(event_id="b"), api.web_event(event_id="c", event_time=0)))
    api.send(web_body(api.web_event(event_id="t"), test_event_code="T1"))
    api.send(web_body(api.web_event(user={"email": "jane@example.com"})))
    api.send(web_body(api.web_event()), "bad")

    stats = api.stats()
    assert stats == {
        "requests": 5,
        "connections": 1,
        "requests_by_code": {"0": 2, "20001": 1, "40062": 1, "40105": 1},
        "events_received": 6,
        "accepted": 2,
        "deduplicated": 1,
        "duplicates": 1,
        "rejected": {"40002": 1, "40062": 1},
        "rejected_total": 2,
        "test": {"accepted": 1, "deduplicated": 0, "duplicates": 0},
        "faults_injected": 0,
        "faults_by_kind": {},
        "max_events_per_request": 2,
    }
    received = stats["accepted"] + stats["deduplicated"] + stats["rejected_total"]
    assert stats["events_received"] == received + stats["test"]["accepted"]


def test_stats_with_a_prefix_count_only_that_tests_events(api: Api) -> None:
    api.send(web_body(api.web_event(event_id="p1-a"), api.web_event(event_id="p1-a")))
    api.send(web_body(api.web_event(event_id="p1-a")))  # resent: a duplicate, deduplicated
    api.send(web_body(api.web_event(event_id="p2-a"), api.web_event(event_id="p2-a")))
    api.send(web_body(api.web_event(event_id="p1-b"), api.web_event(event_id="p2-b", event_time=0)))
    api.send(web_body(api.web_event(event_id="p1-t"), test_event_code="T1"))
    api.send(web_body(api.web_event(event_id="p2-x", user={"email": "jane@example.com"})))

    p1 = api.stats(prefix="p1-")
    assert p1 == {
        "prefix": "p1-",
        "requests": 6,  # request-level counters stay session-global
        "connections": 1,
        "requests_by_code": {"0": 4, "20001": 1, "40062": 1},
        "events_received": 5,
        "accepted": 2,
        "deduplicated": 2,
        "duplicates": 1,
        "rejected": {},
        "rejected_total": 0,
        "test": {"accepted": 1, "deduplicated": 0, "duplicates": 0},
        "faults_injected": 0,
        "faults_by_kind": {},
        "max_events_per_request": 2,
    }
    p2 = api.stats(prefix="p2-")
    assert p2["events_received"] == 4
    assert (p2["accepted"], p2["deduplicated"], p2["duplicates"]) == (1, 1, 1)
    assert p2["rejected"] == {"40002": 1, "40062": 1}
    assert p2["rejected_total"] == 2
    assert p2["test"] == {"accepted": 0, "deduplicated": 0, "duplicates": 0}
    assert p2["max_events_per_request"] == 2
    api.send(web_body(*(api.web_event(event_id=f"p2-{i}") for i in range(3))))
    assert api.stats(prefix="p1-")["max_events_per_request"] == 2
    assert api.stats(prefix="p2-")["max_events_per_request"] == 3
    assert api.stats(prefix="p2-1")["max_events_per_request"] == 1
    p2 = api.stats(prefix="p2-")
    assert api.sandbox.stats("p2-") == p2
    assert api.stats(prefix="p3-")["events_received"] == 0
    everything = api.stats()  # unfiltered: unchanged, all events
    assert "prefix" not in everything
    assert everything["events_received"] == 12
    assert (everything["accepted"], everything["deduplicated"]) == (6, 3)
    assert api.stats(prefix="")["events_received"] == 12
    response = api.session.get(api.url + "/_sandbox/stats?prefx=p1", timeout=5)
    assert response.status_code == 400
    assert "prefx" in response.json()["error"]


def test_events_filters(api: Api) -> None:
    api.send(web_body(api.web_event(event_id="a"), api.web_event(event_id="b")))
    api.send(crm_body(api.crm_event(event_id="a")))

    assert len(api.events()) == 3
    assert [r["event_id"] for r in api.events(event="QualifiedLead")] == ["a"]
    assert [r["event"] for r in api.events(event_id="a")] == ["Lead", "QualifiedLead"]
    assert api.events(event="qualifiedlead") == []  # names are case-sensitive
    assert len(api.events(event_source_id=CRM_SET)) == 1
    assert len(api.events(event="Lead", event_id="b")) == 1
    assert api.sandbox.events(event_source="crm")[0]["event_id"] == "a"
    response = api.session.get(api.url + "/_sandbox/events?evnt=Lead", timeout=5)
    assert response.status_code == 400
    assert "evnt" in response.json()["error"]


def test_reset_clears_ledger_and_stats_but_keeps_faults(api: Api) -> None:
    api.send(web_body(api.web_event()))
    api.faults(server_error=0.25)
    response = api.session.post(api.url + "/_sandbox/reset", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert api.events() == []
    assert api.stats()["requests"] == 0
    assert api.stats()["accepted"] == 0
    assert api.session.get(api.url + "/_sandbox/faults", timeout=5).json()["server_error"] == 0.25
    api.faults(clear=True)
    assert api.send(web_body(api.web_event()))["code"] == 0  # not a duplicate any more
    assert api.stats()["accepted"] == 1


def test_unknown_paths_and_methods(api: Api) -> None:
    assert api.session.get(api.url + "/nope", timeout=5).status_code == 404
    assert api.session.get(api.url + TRACK, timeout=5).status_code == 405
    assert api.session.post(api.url + "/open_api/v1.3/event/track", timeout=5).status_code == 404
    assert api.session.post(api.url + "/_sandbox/stats", timeout=5).status_code == 405


# -- faults ----------------------------------------------------------------------------------


def test_faults_endpoint_shape_and_validation(api: Api) -> None:
    current = api.session.get(api.url + "/_sandbox/faults", timeout=5).json()
    assert current == {
        "throttle": 0.0,
        "server_error": 0.0,
        "http_502": 0.0,
        "http_503": 0.0,
        "timeout": 0.0,
        "timeout_seconds": 15.0,
        "timeout_mode": "504",
        "auth_error": False,
        "latency_seconds": 0.0,
        "seed": None,
        "rejection_style": "named",
        "duplicated_request": 0.0,
        "max_events_413": None,
        "http_error": None,
        "unknown_code": None,
        "expired_tokens": [],
    }
    for bad in (
        {"throttle": 0.7, "server_error": 0.7},
        {"throttle": -1},
        {"throtle": 1},
        {"auth_error": "yes"},
        {"seed": "x"},
        {"timeout_mode": "hang"},
        {"latency_seconds": "slow"},
        {"latency_seconds": -1},
    ):
        response = api.faults(**bad)
        assert response.status_code == 400, bad
        assert "error" in response.json()
    assert api.session.get(api.url + "/_sandbox/faults", timeout=5).json() == current


def test_throttle_fault_answers_40100_and_records_nothing(api: Api) -> None:
    assert api.faults(throttle=1.0, seed=42).json()["throttle"] == 1.0
    for _ in range(3):
        envelope = api.send(web_body(api.web_event()))
        assert envelope["code"] == 40100
    assert api.events() == []
    stats = api.stats()
    assert stats["faults_injected"] == 3
    assert stats["faults_by_kind"] == {"throttle": 3}
    assert stats["events_received"] == 0
    assert stats["requests_by_code"] == {"40100": 3}


def test_server_error_fault_answers_50000(api: Api) -> None:
    api.faults(server_error=1.0)
    envelope = api.send(web_body(api.web_event()))
    assert envelope["code"] == 50000
    assert api.events() == []


@pytest.mark.parametrize(("fault", "status"), [("http_502", 502), ("http_503", 503)])
def test_gateway_faults_answer_http_errors(api: Api, fault: str, status: int) -> None:
    api.faults(**{fault: 1.0})
    response = api.track(web_body(api.web_event()))
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert api.stats()["requests_by_code"] == {fault: 1}
    assert api.events() == []


def test_auth_error_fault_on_then_off(api: Api) -> None:
    api.faults(auth_error=True)
    assert api.send(web_body(api.web_event()))["code"] == 40105
    api.faults(auth_error=False)
    assert api.send(web_body(api.web_event()))["code"] == 0
    assert api.stats()["faults_by_kind"] == {"auth_error": 1}


def test_timeout_fault_answers_504_after_waiting(api: Api) -> None:
    api.faults(timeout=1.0, timeout_seconds=0.3)
    started = time.monotonic()
    response = api.track(web_body(api.web_event()))
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.3
    assert api.events() == []


def test_timeout_fault_client_times_out(api: Api) -> None:
    api.faults(timeout=1.0, timeout_seconds=2, timeout_mode="close")
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.track(web_body(api.web_event()), timeout=0.2)


def test_timeout_fault_close_mode_drops_the_connection(api: Api) -> None:
    api.faults(timeout=1.0, timeout_seconds=0.1, timeout_mode="close")
    with pytest.raises(requests.exceptions.ConnectionError):
        api.track(web_body(api.web_event()))
    api.faults(clear=True)
    assert api.send(web_body(api.web_event()))["code"] == 0


def test_seeded_faults_are_reproducible(api: Api) -> None:
    def run() -> list[int]:
        api.faults(throttle=0.5, seed=42)
        codes = [api.send(web_body(api.web_event(event_id=f"s{i}")))["code"] for i in range(30)]
        api.sandbox.reset()
        return codes

    first, second = run(), run()
    assert first == second
    assert 5 < first.count(40100) < 25
    assert set(first) == {0, 40100}


def test_faults_from_config_at_start(make_api: Any) -> None:
    api = make_api(faults=FaultSettings(server_error=1.0), expired_tokens=frozenset({OTHER_TOKEN}))
    assert api.send(web_body(api.web_event()))["code"] == 50000
    api.sandbox.configure_faults(clear=True)
    assert api.send(web_body(api.web_event()), OTHER_TOKEN)["code"] == 0


def test_fault_settings_reject_bad_shares() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultSettings(throttle=0.6, http_503=0.5)


# -- rate limit ------------------------------------------------------------------------------


def test_rate_limit_per_token(make_api: Any) -> None:
    api = make_api(rate_limit_per_second=3)
    codes = [api.send(web_body(api.web_event(event_id=f"r{i}")))["code"] for i in range(5)]
    assert codes[:3] == [0, 0, 0]
    assert codes[3:] == [40100, 40100]
    assert api.send(web_body(api.web_event(event_id="o")), OTHER_TOKEN)["code"] == 0
    time.sleep(0.4)
    assert api.send(web_body(api.web_event(event_id="later")))["code"] == 0
    assert api.stats()["accepted"] == 5


def test_reset_clears_the_rate_limit_state(make_api: Any) -> None:
    api = make_api(rate_limit_per_second=0.001)  # one request, then no refill in the test
    assert api.send(web_body(api.web_event(event_id="a")))["code"] == 0
    assert api.send(web_body(api.web_event(event_id="b")))["code"] == 40100
    api.sandbox.reset()
    assert api.send(web_body(api.web_event(event_id="c")))["code"] == 0


# -- transport -------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(api: Api) -> None:
    api.send(web_body(api.web_event(event_id="1")))
    api.send(web_body(api.web_event(event_id="2")))
    stats = api.stats()
    assert stats["requests"] == 2
    assert stats["connections"] == 1


def test_body_too_large_is_413(make_api: Any) -> None:
    api = make_api(max_body_bytes=1000)
    events = [api.web_event(event_id=f"e{i}") for i in range(10)]
    assert api.track(web_body(*events)).status_code == 413


def test_chunked_body_is_read(api: Api) -> None:
    payload = json.dumps(web_body(api.web_event())).encode()
    response = api.session.post(
        api.url + TRACK,
        data=iter([payload[:50], payload[50:]]),
        headers={"Access-Token": TOKEN, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.json()["code"] == 0


# -- standalone + CLI ------------------------------------------------------------------------


def test_sandbox_imports_nothing_else_from_streams() -> None:
    code = (
        "import sys, streams.local.sandbox.server;"
        "print(sorted(m for m in sys.modules if m.startswith('streams')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    # httpd, ledger, options: the plumbing and command-line pieces the local servers share
    assert out.strip() == (
        "['streams', 'streams.local', 'streams.local.httpd', 'streams.local.ledger', "
        "'streams.local.options', "
        "'streams.local.sandbox', 'streams.local.sandbox.config', 'streams.local.sandbox.engine', "
        "'streams.local.sandbox.server', 'streams.local.sandbox.state', "
        "'streams.local.sandbox.validation']"
    )


def test_cli_defaults_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    args = _build_parser().parse_args([])
    assert (args.host, args.port, args.token, args.rate_limit) == ("127.0.0.1", 8090, None, None)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--fault-throttle" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--fault-throttle", "0.8", "--fault-http-503", "0.8"])
    assert exit_info.value.code == 2


def test_sandbox_context_manager_and_url() -> None:
    clock = FakeClock()
    config = SandboxConfig(
        frozenset({TOKEN}), frozenset({PIXEL}), frozenset({CRM_SET}), clock=clock
    )
    with Sandbox(config) as sandbox:
        assert sandbox.url.startswith("http://127.0.0.1:")
        response = requests.get(sandbox.url + "/_sandbox/stats", timeout=5)
        assert response.json()["requests"] == 0


# -- the API's other answers, injected (issue 13 §3) ----------------------------------------


def _bad_value(api: Api, n: int) -> dict[str, Any]:
    return api.web_event(event_id=f"e-{n}", properties={"value": "abc", "currency": "GBP"})


def test_unnamed_rejection_rejects_the_request_without_naming_the_event(api: Api) -> None:
    assert api.faults(rejection_style="unnamed").status_code == 200
    body = web_body(
        api.web_event(event_id="e-0"), _bad_value(api, 1), api.web_event(event_id="e-2")
    )
    envelope = api.send(body)
    assert envelope["code"] == 40002
    assert "properties.value" in envelope["message"]
    assert (
        "data." not in envelope["message"].lower() and "batch." not in envelope["message"].lower()
    )
    assert envelope["data"] == {}
    assert api.events() == []  # nothing of a rejected request is recorded
    # Good events alone are accepted; the bad one alone is rejected.
    assert api.send(web_body(api.web_event(event_id="e-0")))["code"] == 0
    assert api.send(web_body(_bad_value(api, 1)))["code"] == 40002


def test_batch_style_rejection_names_events_as_batch_n(api: Api) -> None:
    api.faults(rejection_style="batch")
    envelope = api.send(web_body(api.web_event(event_id="e-0"), _bad_value(api, 1)))
    assert envelope["code"] == 40002
    assert envelope["message"].startswith("Batch.1.properties.value: ")
    assert api.events() == []


def test_duplicated_request_answers_40050_and_records_the_events(api: Api) -> None:
    api.faults(duplicated_request=1.0)
    envelope = api.send(web_body(api.web_event(event_id="e-0")))
    assert (envelope["code"], envelope["message"]) == (40050, "Duplicated request")
    assert [e["event_id"] for e in api.events()] == ["e-0"]
    assert api.stats()["faults_by_kind"] == {"duplicated_request": 1}


def test_too_many_events_for_the_payload_limit_answers_413_without_envelope(api: Api) -> None:
    api.faults(max_events_413=2)
    response = api.track(web_body(*(api.web_event(event_id=f"e-{n}") for n in range(3))))
    assert response.status_code == 413
    assert "json" not in response.headers["Content-Type"]
    assert api.send(web_body(*(api.web_event(event_id=f"e-{n}") for n in range(2))))["code"] == 0


@pytest.mark.parametrize("status", [401, 403, 404])
def test_http_error_answers_without_the_envelope(api: Api, status: int) -> None:
    api.faults(http_error=status)
    response = api.track(web_body(api.web_event()))
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert api.events() == []
    api.faults(http_error=None)
    assert api.send(web_body(api.web_event()))["code"] == 0


def test_unknown_code_answers_every_request(api: Api) -> None:
    api.faults(unknown_code=41234)
    envelope = api.send(web_body(api.web_event()))
    assert envelope["code"] == 41234
    assert api.events() == []


@pytest.mark.parametrize(
    "settings",
    [
        {"rejection_style": "loud"},
        {"duplicated_request": 2},
        {"duplicated_request": "half"},
        {"max_events_413": 0},
        {"http_error": 500},
        {"http_error": "404"},
        {"unknown_code": -1},
    ],
)
def test_bad_answer_injection_settings_are_refused(api: Api, settings: dict[str, Any]) -> None:
    response = api.faults(**settings)
    assert response.status_code == 400
    assert "error" in response.json()


def test_cli_flags_set_the_answer_injection() -> None:
    from streams.local.sandbox.server import _build_parser

    args = _build_parser().parse_args(
        [
            "--fault-rejection-style",
            "unnamed",
            "--fault-duplicated-request",
            "0.5",
            "--fault-max-events-413",
            "10",
            "--fault-http-error",
            "404",
            "--fault-unknown-code",
            "41234",
        ]
    )
    assert (
        args.fault_rejection_style,
        args.fault_duplicated_request,
        args.fault_max_events_413,
        args.fault_http_error,
        args.fault_unknown_code,
    ) == ("unnamed", 0.5, 10, 404, 41234)
