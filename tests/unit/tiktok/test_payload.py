"""TikTok Events API payloads: routing, web and crm events, request body."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.domain.types import Channel, MatchKeys, Rejection
from streams.tiktok.payload import Destination, build_event, build_request, route
from tests.unit.factories import (
    EMAIL_SHA,
    EXTERNAL_ID_SHA,
    IP,
    PAGE_URL,
    PHONE_SHA,
    TTCLID,
    TTP,
    USER_AGENT,
    make_conversion,
)

CRM_CONV = make_conversion(channel=Channel.CRM, tiktok_lead_id="7312345678901234567")


def test_web_conversion_goes_to_the_pixel() -> None:
    dest = route(make_conversion(), pixel_code="PIXEL1", crm_event_set_id="SET1")
    assert dest == Destination("web", "PIXEL1", None)


def test_crm_conversion_goes_to_the_crm_event_set() -> None:
    dest = route(CRM_CONV, pixel_code="PIXEL1", crm_event_set_id="SET1", test_event_code="T1")
    assert dest == Destination("crm", "SET1", "T1")


@pytest.mark.parametrize(
    ("conv", "crm_event_set_id"),
    [
        (CRM_CONV, None),
        (CRM_CONV, ""),
        (make_conversion(channel=Channel.CRM, tiktok_lead_id=None), "SET1"),
        (make_conversion(channel=Channel.WEB, tiktok_lead_id="7312"), "SET1"),
    ],
)
def test_everything_else_goes_to_the_pixel(conv: object, crm_event_set_id: str | None) -> None:
    dest = route(conv, pixel_code="PIXEL1", crm_event_set_id=crm_event_set_id)  # type: ignore[arg-type]
    assert dest == Destination("web", "PIXEL1")


@pytest.mark.parametrize("pixel_code", [None, ""])
def test_web_without_a_pixel_has_no_destination(pixel_code: str | None) -> None:
    result = route(CRM_CONV, pixel_code=pixel_code, crm_event_set_id=None)
    assert isinstance(result, Rejection) and result.reason == "no_destination"
    assert "LEADSTREAM_TIKTOK_PIXEL_CODE" in result.message
    assert CRM_CONV.event_id in result.message


def test_web_event_without_page_url_is_rejected_before_sending() -> None:
    conv = make_conversion(page_url=None, matched=False)
    result = route(conv, pixel_code="PIXEL1", crm_event_set_id=None)
    assert result == Rejection(
        "missing_field",
        f"Conversion event_id={conv.event_id}: field 'page_url' is required for "
        "event_source=web (page.url); set LEADSTREAM_FALLBACK_PAGE_URL to send conversions "
        "that have no page",
        "page_url",
    )
    crm = route(
        make_conversion(channel=Channel.CRM, tiktok_lead_id="7", page_url=None),
        pixel_code=None,
        crm_event_set_id="SET1",
    )
    assert crm == Destination("crm", "SET1")


def test_web_event() -> None:
    conv = make_conversion(
        event="Purchase",
        event_time=datetime(2025, 3, 14, 11, 55, 0, 999_000, tzinfo=UTC),
        value=1200.0,
        currency="EUR",
        order_id="o-1",
        limited_data_use=True,
    )
    assert build_event(conv, "web") == {
        "event": "Purchase",
        "event_time": 1741953300,
        "event_id": conv.event_id,
        "user": {
            "email": EMAIL_SHA,
            "phone": PHONE_SHA,
            "external_id": EXTERNAL_ID_SHA,
            "ttclid": TTCLID,
            "ttp": TTP,
            "ip": IP,
            "user_agent": USER_AGENT,
        },
        "properties": {"value": 1200.0, "currency": "EUR", "order_id": "o-1"},
        "page": {"url": PAGE_URL, "referrer": "https://www.tiktok.com/"},
        "limited_data_use": True,
    }


def test_crm_event_has_a_lead_object_and_no_click_data() -> None:
    event = build_event(CRM_CONV, "crm")
    assert event == {
        "event": "QualifiedLead",
        "event_time": int(CRM_CONV.event_time.timestamp()),
        "event_id": CRM_CONV.event_id,
        "user": {"email": EMAIL_SHA, "phone": PHONE_SHA, "external_id": EXTERNAL_ID_SHA},
        "lead": {"lead_id": "7312345678901234567", "lead_event_source": "hubspot"},
    }
    assert isinstance(event["event_time"], int)


def test_absent_values_are_omitted_not_null() -> None:
    conv = make_conversion(
        keys=MatchKeys(phone_sha256=PHONE_SHA),
        ttclid=None,
        ttp=None,
        ip=None,
        user_agent=None,
        referrer_url=None,
    )
    event = build_event(conv, "web")
    assert event["user"] == {"phone": PHONE_SHA}
    assert event["page"] == {"url": PAGE_URL}
    assert "properties" not in event
    assert event["limited_data_use"] is False
    bare = make_conversion(
        keys=MatchKeys(),
        ttclid=None,
        ttp=None,
        ip=None,
        user_agent=None,
        page_url=None,
        referrer_url=None,
        crm=None,
        tiktok_lead_id=None,
    )
    assert set(build_event(bare, "web")) == {"event", "event_time", "event_id", "limited_data_use"}
    assert build_event(bare, "crm")["lead"] == {}
    assert None not in build_event(conv, "web").values()


def test_request_body() -> None:
    events = [build_event(make_conversion(), "web")]
    assert build_request(Destination("web", "PIXEL1"), events) == {
        "event_source": "web",
        "event_source_id": "PIXEL1",
        "data": events,
    }
    body = build_request(Destination("crm", "SET1", "TEST123"), events)
    assert body["test_event_code"] == "TEST123"
    assert body["data"] is not events and body["data"][0] is not events[0]


def test_locale_is_sent_plain_on_web_events_only() -> None:
    conv = make_conversion(locale="en-GB")
    assert build_event(conv, "web")["user"]["locale"] == "en-GB"
    assert "locale" not in build_event(conv, "crm")["user"]
    assert "locale" not in build_event(make_conversion(), "web")["user"]
