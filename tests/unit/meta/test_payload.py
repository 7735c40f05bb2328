"""Meta Conversions API payloads: names, ids, action_source, user_data, shapes, age, consent."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import timedelta

import pytest

from streams.domain.types import (
    ClickContext,
    Consent,
    Conversion,
    MatchKeys,
    Rejection,
    SourceKind,
)
from streams.meta.payload import (
    DEFAULT_STAGE_MAP_META,
    MAX_EVENT_AGE,
    Skipped,
    build_event,
    build_request,
    event_id,
    event_name,
)
from tests.unit.factories import (
    EMAIL_SHA,
    EXTERNAL_ID_SHA,
    FORM_EVENT_ID,
    IP,
    NOW,
    PAGE_URL,
    PHONE_SHA,
    USER_AGENT,
    make_conversion,
)

# meta-capi.md, test vector: the phone without '+'.
META_PHONE_SHA = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"
FBC = "fb.1.1710410000000.IwAR2xyz"
FBP = "fb.1.1710400000000.1234567890"
META_LEAD_ID = "525645896321548"
MAP = DEFAULT_STAGE_MAP_META


CLICK_FIELDS = {f.name for f in fields(ClickContext)}


def with_fields(conv: Conversion, **overrides: object) -> Conversion:
    """Replace conversion fields and click fields alike (the click is a nested value)."""
    click = {k: v for k, v in overrides.items() if k in CLICK_FIELDS}
    own = {k: v for k, v in overrides.items() if k not in CLICK_FIELDS}
    return replace(conv, click=replace(conv.click, **click), **own)  # type: ignore[arg-type]


def status_conv(**overrides: object) -> Conversion:
    base = with_fields(
        make_conversion(
            status="qualified",
            keys=MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA, META_PHONE_SHA),
        ),
        fbc=FBC,
        fbp=FBP,
    )
    return with_fields(base, **overrides)


def booking_conv(**overrides: object) -> Conversion:
    base = status_conv(
        event_id="browser-booking-1",
        event="Schedule",
        source_kind=SourceKind.BOOKING,
        source_id="b-1",
        status=None,
    )
    return with_fields(base, **overrides)


def built(conv: Conversion, stage_map: object = MAP) -> dict[str, object]:
    event = build_event(conv, stage_map=stage_map, now=NOW)  # type: ignore[arg-type]
    assert isinstance(event, dict), event
    return event


@pytest.mark.parametrize(
    ("status", "expected"),
    [("qualified", "QualifiedLead"), ("SQL", "QualifiedLead"), ("won", "Purchase")],
)
def test_default_stage_map(status: str, expected: str) -> None:
    assert event_name(status_conv(status=status), MAP) == expected


def test_booking_is_schedule_whatever_the_map() -> None:
    assert event_name(booking_conv(), {}) == "Schedule"


def test_override_map_wins() -> None:
    conv = status_conv(status="qualified")
    assert built(conv, {"qualified": "LeadQualified"})["event_name"] == "LeadQualified"


def test_unmapped_status_is_skipped_not_dead_lettered() -> None:
    result = build_event(status_conv(status="contacted"), stage_map=MAP, now=NOW)
    assert isinstance(result, Skipped) and result.reason == "status_not_mapped"
    assert isinstance(build_event(status_conv(status=None), stage_map=MAP, now=NOW), Skipped)


def test_event_id_is_form_event_id_and_meta_event() -> None:
    conv = status_conv(event_id=f"{FORM_EVENT_ID}:ApplicationApproval", event="ApplicationApproval")
    assert event_id(conv, "QualifiedLead") == f"{FORM_EVENT_ID}:QualifiedLead"
    assert built(conv)["event_id"] == f"{FORM_EVENT_ID}:QualifiedLead"


def test_event_id_keeps_order_and_lead_bases() -> None:
    order = status_conv(status="won", event="Purchase", event_id="ord-9:Purchase")
    assert event_id(order, "Purchase") == "ord-9:Purchase"
    lead = status_conv(event="QualifiedLead", event_id="lead-L1:QualifiedLead")
    assert event_id(lead, "MQL") == "lead-L1:MQL"


def test_booking_keeps_the_browser_event_id() -> None:
    event = built(booking_conv())
    assert event["event_id"] == "browser-booking-1"
    assert event["event_name"] == "Schedule"


def test_booking_with_page_and_agent_is_website() -> None:
    event = built(booking_conv())
    assert event["action_source"] == "website"
    assert event["event_source_url"] == PAGE_URL
    assert event["user_data"]["client_user_agent"] == USER_AGENT  # type: ignore[index]


@pytest.mark.parametrize("missing", ["page_url", "user_agent"])
def test_booking_without_page_or_agent_is_system_generated(missing: str) -> None:
    event = built(booking_conv(**{missing: None}))
    assert event["action_source"] == "system_generated"


def test_crm_stage_event_is_system_generated() -> None:
    assert built(status_conv())["action_source"] == "system_generated"


def test_user_data_hashes_keys_and_leaves_click_context_plain() -> None:
    user = built(status_conv())["user_data"]
    assert user == {
        "em": [EMAIL_SHA],
        "ph": [META_PHONE_SHA],
        "external_id": [EXTERNAL_ID_SHA],
        "fbc": FBC,
        "fbp": FBP,
        "client_ip_address": IP,
        "client_user_agent": USER_AGENT,
    }


def test_phone_hashed_without_plus_is_preferred_over_the_tiktok_form() -> None:
    user = built(status_conv())["user_data"]
    assert user["ph"] == [META_PHONE_SHA] != [PHONE_SHA]  # type: ignore[index]


def test_without_the_digits_form_no_phone_goes_to_meta() -> None:
    user = built(status_conv(keys=MatchKeys(EMAIL_SHA, phone_sha256=PHONE_SHA)))["user_data"]
    assert "ph" not in user  # type: ignore[operator]


def test_no_match_key_at_all_is_dead_lettered() -> None:
    conv = status_conv(keys=MatchKeys(), fbc=None, fbp=None, ip=None)
    result = build_event(conv, stage_map=MAP, now=NOW)
    assert isinstance(result, Rejection) and result.field == "user_data"


def test_ip_and_agent_together_are_enough() -> None:
    conv = status_conv(keys=MatchKeys(), fbc=None, fbp=None)
    assert "user_data" in built(conv)


def test_instant_form_lead_takes_the_conversion_leads_shape() -> None:
    event = built(status_conv(meta_lead_id=META_LEAD_ID, crm="hubspot"))
    assert event["action_source"] == "system_generated"
    assert event["user_data"]["lead_id"] == int(META_LEAD_ID)  # type: ignore[index]
    assert event["custom_data"] == {"event_source": "crm", "lead_event_source": "hubspot"}
    assert "event_source_url" not in event


def test_a_malformed_meta_lead_id_goes_as_a_web_event() -> None:
    event = built(status_conv(meta_lead_id="not-a-leadgen-id"))
    assert "lead_id" not in event["user_data"]  # type: ignore[operator]
    assert "custom_data" not in event


def test_conversion_leads_names_a_crm_when_none_is_known() -> None:
    event = built(status_conv(meta_lead_id=META_LEAD_ID, crm=None))
    assert event["custom_data"]["lead_event_source"] == "Leadstream"  # type: ignore[index]


def test_web_lead_has_no_lead_id_or_crm_source() -> None:
    event = built(status_conv(meta_lead_id=None))
    assert "lead_id" not in event["user_data"]  # type: ignore[operator]
    assert "custom_data" not in event


def test_booking_of_an_instant_form_lead_stays_a_web_event() -> None:
    event = built(booking_conv(meta_lead_id=META_LEAD_ID))
    assert event["action_source"] == "website"
    assert "lead_id" not in event["user_data"]  # type: ignore[operator]


def test_purchase_carries_value_currency_and_order() -> None:
    conv = status_conv(status="won", event="Purchase", value=99.5, currency="EUR", order_id="ord-9")
    event = built(conv)
    assert event["custom_data"] == {"value": 99.5, "currency": "EUR", "order_id": "ord-9"}


def test_event_time_is_integer_seconds() -> None:
    event = built(status_conv())
    assert event["event_time"] == int((NOW - timedelta(minutes=5)).timestamp())


def test_an_event_older_than_seven_days_is_refused() -> None:
    conv = status_conv(event_time=NOW - MAX_EVENT_AGE)
    result = build_event(conv, stage_map=MAP, now=NOW)
    assert isinstance(result, Rejection)
    assert result.reason == "too_old_for_destination"
    assert result.field == "event_time"
    assert "7.0 days" in result.message


def test_an_event_six_days_old_is_sent() -> None:
    built(status_conv(event_time=NOW - timedelta(days=6, hours=23)))


def test_denied_consent_is_never_built() -> None:
    result = build_event(status_conv(ad_consent=Consent.DENIED), stage_map=MAP, now=NOW)
    assert isinstance(result, Skipped) and result.reason == "consent_denied"


def test_limited_data_use_asks_for_ldu() -> None:
    event = built(status_conv(limited_data_use=True))
    assert event["data_processing_options"] == ["LDU"]
    assert event["data_processing_options_country"] == 0
    assert event["data_processing_options_state"] == 0


def test_without_limited_data_use_ldu_is_explicitly_off() -> None:
    event = built(status_conv())
    assert event["data_processing_options"] == []
    assert "data_processing_options_country" not in event


def test_request_body_carries_data_and_test_code() -> None:
    assert build_request([{"a": 1}]) == {"data": [{"a": 1}]}
    assert build_request([{"a": 1}], "TEST1") == {"data": [{"a": 1}], "test_event_code": "TEST1"}
