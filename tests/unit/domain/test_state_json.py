"""The lead table's JSON: round trips, compactness and the stored layout."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from streams.domain.state_json import lead_state_from_json, lead_state_to_json
from streams.domain.types import (
    Booking,
    Consent,
    LeadState,
    MatchKeys,
    StatusChange,
)
from tests.unit.factories import (
    EMAIL_SHA,
    EXTERNAL_ID_SHA,
    FORM_EVENT_ID,
    LEAD_ID,
    NOW,
    PHONE_SHA,
    RAW_PII,
    TIKTOK_LEAD_ID,
    make_booking,
    make_context,
    make_full_click,
    make_pending,
    make_purchase,
    make_state,
)

# --- lead state JSON ----------------------------------------------------------------------------


def test_typical_lead_state_round_trips_under_one_kib() -> None:
    state = make_state()
    data = lead_state_to_json(state)
    assert lead_state_from_json(data) == state
    assert len(data) < 1024, len(data)
    # Well under: ~950 bytes, most of it the click itself (issue 17 added ~100: fbc, fbp and the
    # phone's Meta hash).
    assert len(data) < 1000, len(data)
    for raw in RAW_PII:
        assert raw.encode() not in data


def test_lead_state_with_pending_items_round_trips() -> None:
    state = LeadState(
        lead_id=LEAD_ID,
        pending=(
            make_pending(make_purchase(order_id="o-1", keys=MatchKeys(EMAIL_SHA)), NOW),
            make_pending(
                make_booking(
                    lead_id=None,
                    ttclid="t",
                    ttp="p",
                    scheduled_for=NOW + timedelta(days=2),
                    value=None,
                    currency=None,
                ),
                NOW - timedelta(hours=3),
            ),
            make_pending(make_booking(booking_id="bk-2", keys=MatchKeys()), NOW),
        ),
        seen={"s:c-won": NOW, "b:bk-1": NOW},
        updated_at=NOW,
    )
    back = lead_state_from_json(lead_state_to_json(state))
    assert back == state
    assert isinstance(back.pending[0].item, StatusChange)
    assert isinstance(back.pending[1].item, Booking)


@pytest.mark.parametrize(
    "state",
    [
        LeadState(lead_id="bare"),
        make_state(
            context=make_context(
                lead_id="other-lead",
                tiktok_lead_id="7312",
                ad_consent=Consent.DENIED,
                limited_data_use=True,
                keys=MatchKeys(email_sha256="not-a-hash", phone_sha256=PHONE_SHA.upper()),
                referrer_url=None,
            )
        ),
        make_state(context=make_context(ad_consent=Consent.UNKNOWN, keys=MatchKeys())),
        make_state(
            sent={"x:QualifiedLead": NOW, f"{FORM_EVENT_ID}{FORM_EVENT_ID}": NOW},
            seen={f"f:{FORM_EVENT_ID}:again": NOW},
        ),
        make_state(context=None, sent={f"lead-{LEAD_ID}:QualifiedLead": NOW}),
    ],
)
def test_lead_state_edge_cases_round_trip(state: LeadState) -> None:
    assert lead_state_from_json(lead_state_to_json(state)) == state


def test_lead_state_json_is_compact() -> None:
    data = json.loads(lead_state_to_json(make_state()))
    assert set(data) == {"l", "c", "S", "s", "N", "n", "u"}
    # Times not after updated_at are written as milliseconds before it (0 or less): shorter.
    before = int((NOW - timedelta(hours=1)).timestamp() * 1000) - data["u"]
    assert before < 0
    assert data["S"] == [["", ":QualifiedLead", before]]
    assert "tl" not in data["c"] and "ld" not in data["c"]  # None and False are omitted
    assert len(data["c"]["k"]["e"]) == 43  # base64url, not 64 hex characters


STORED_STATE = (
    b'{"l":"lead-000123","c":{"e":"f1d2c3b4-5a6b-4c7d-8e9f-0a1b2c3d4e5f","t":1741946400000,"u"'
    b':"https://example.com/landing/offer?utm_source=tiktok&utm_campaign=spring","k":{"e":"huC'
    b'55WwXzE0SOH4ZSbhQU_vnO8POWhGIcTqdMAzGEz0","p":"qKzDqQp7Tk3GXpPbkkDtJlIwUO91TWO3W1Fh3nZ4F'
    b'DY","x":"J6rbxZKXPwQ6_JgYAtlo7FCJHPqFlwpSmWOyVpV6Md4"},"r":"https://www.tiktok.com/","c"'
    b':"E_C_P_CqgBx7rM3m5ZQd0x4fN2Lk9yW1uTj8sQp6vHa3eRb0cGi5oUn2lKf7dXz4wYt9qJe1gSh6mVr","p":"'
    b'2Qz0R1pYBcHs5XKGk1Wnq2Y9Lr1","tl":"7312345678901234567","i":"203.0.113.42","a":"Mozilla/'
    b"5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    b'Mobile/15E148","ac":"D","ld":1,"lo":"en-GB"},"s":{"order-77:Purchase":1741953000000},"S"'
    b':[["",":QualifiedLead",1741950000000]],"n":{"s:6b1f8e2a-3c4d-4e5f-9a0b-1c2d3e4f5a6b":174'
    b'1950000000},"N":[["f:","",1741946400000]],"p":[{"s":{"i":"c-won","l":"lead-000123","st":'
    b'"won","t":1741953300000,"cr":"hubspot","ps":"new","v":1200.0,"cu":"EUR","o":"o-1","k":{"'
    b'e":"huC55WwXzE0SOH4ZSbhQU_vnO8POWhGIcTqdMAzGEz0"}},"q":["crm.lead-status-changed",0,41],'
    b'"r":1741953600000},{"b":{"i":"bk-1","e":"pixel-schedule-1","t":1741951800000,"l":"lead-0'
    b'00123","k":{"e":"huC55WwXzE0SOH4ZSbhQU_vnO8POWhGIcTqdMAzGEz0","p":"qKzDqQp7Tk3GXpPbkkDtJ'
    b'lIwUO91TWO3W1Fh3nZ4FDY"},"v":50.0,"cu":"GBP","u":"https://example.com/book","ip":"198.51'
    b'.100.7","a":"BookingAgent/1.0","c":"t","p":"p","sf":1742126400000},"q":["leads.booking-c'
    b'reated",1,7],"r":1741942800000}],"u":1741953000000}'
)
"""A lead state as stored before the click context became one value (issue 14): full context,
both ledgers, a waiting purchase and a waiting booking. Stored tables must keep decoding."""

STORED_STATE_RELATIVE = (
    STORED_STATE.replace(b'"order-77:Purchase":1741953000000', b'"order-77:Purchase":0')
    .replace(b'":QualifiedLead",1741950000000]', b'":QualifiedLead",-3000000]')
    .replace(b'3e4f5a6b":1741950000000', b'3e4f5a6b":-3000000')
    .replace(b'["f:","",1741946400000]', b'["f:","",-6600000]')
)
"""The same state as written since issue 15: ledger times relative to ``u`` (1741953000000)."""


def test_stored_lead_state_layout_is_unchanged() -> None:
    state = make_state(
        context=make_context(
            tiktok_lead_id=TIKTOK_LEAD_ID,
            ad_consent=Consent.DENIED,
            limited_data_use=True,
            # Written before issue 17: no Meta click ids, no Meta form of the phone.
            fbc=None,
            fbp=None,
            keys=MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA),
        ),
        pending=(
            make_pending(make_purchase(order_id="o-1", keys=MatchKeys(EMAIL_SHA)), NOW),
            make_pending(
                make_booking(
                    ttclid="t",
                    ttp="p",
                    scheduled_for=NOW + timedelta(days=2),
                    keys=MatchKeys(EMAIL_SHA, PHONE_SHA),
                ),
                NOW - timedelta(hours=3),
            ),
        ),
    )
    assert lead_state_from_json(STORED_STATE) == state  # the old layout still decodes
    assert lead_state_from_json(STORED_STATE_RELATIVE) == state
    assert lead_state_to_json(state) == STORED_STATE_RELATIVE
    assert len(STORED_STATE) - len(STORED_STATE_RELATIVE) == 27


def test_a_time_after_updated_at_is_written_absolute() -> None:
    later = NOW + timedelta(minutes=5)
    state = make_state(sent={"x:Purchase": later}, seen={}, updated_at=NOW)
    data = json.loads(lead_state_to_json(state))
    assert data["s"] == {"x:Purchase": int(later.timestamp() * 1000)}
    assert lead_state_from_json(lead_state_to_json(state)) == state


@pytest.mark.parametrize(
    "data", [b"", b"[]", b"{}", b'{"l": "x", "c": {}}', b"\xff", b'{"l":1,"u":"x"}']
)
def test_lead_state_from_bad_bytes_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        lead_state_from_json(data)


def test_state_times_keep_millisecond_precision_only() -> None:
    state = make_state(updated_at=NOW + timedelta(microseconds=1500))
    assert lead_state_from_json(lead_state_to_json(state)).updated_at == NOW + timedelta(
        milliseconds=1
    )
    assert replace(state, updated_at=NOW) != state


def test_every_click_field_round_trips_through_the_table() -> None:
    state = make_state(context=make_context(click=make_full_click()))
    assert lead_state_from_json(lead_state_to_json(state)) == state


def test_lead_state_json_keeps_non_ascii_text_as_utf8_and_reads_escaped_states() -> None:
    # The lead table is written with orjson (UTF-8, no \u escapes); states written earlier with
    # the standard library's json (\u escapes) still read back the same.
    state = replace(make_state(), lead_id="lead-é-東京")
    data = lead_state_to_json(state)
    assert "lead-é-東京".encode() in data
    assert lead_state_from_json(data) == state
    escaped = json.dumps(json.loads(data), separators=(",", ":")).encode()
    assert b"\\u00e9" in escaped
    assert lead_state_from_json(escaped) == state
