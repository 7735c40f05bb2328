"""Intake of the Meta click context: fbc (from fbclid too), fbp, meta_lead_id, phone hashes."""

from __future__ import annotations

from streams.domain.intake import booking_from_record, form_from_record
from streams.domain.types import Booking, FormSubmit, MatchKeys
from tests.unit.factories import (
    CLICK_AT,
    EMAIL_SHA,
    FBC,
    FBP,
    META_LEAD_ID,
    META_PHONE_SHA,
    NOW,
    PHONE_SHA,
    make_booking_record,
    make_form_record,
)

URL = "https://example.com/landing?utm_source=fb&fbclid=IwAR2FromTheUrl"


def form(**overrides: object) -> FormSubmit:
    result = form_from_record(make_form_record(**overrides), NOW)
    assert isinstance(result, FormSubmit), result
    return result


def test_the_forms_meta_click_ids_are_kept_unhashed() -> None:
    click = form(meta_lead_id=META_LEAD_ID).click
    assert (click.fbc, click.fbp, click.meta_lead_id) == (FBC, FBP, META_LEAD_ID)


def test_fbc_is_built_from_the_page_urls_fbclid_when_the_form_has_none() -> None:
    ms = int(CLICK_AT.timestamp() * 1000)
    assert form(fbc=None, page_url=URL).click.fbc == f"fb.1.{ms}.IwAR2FromTheUrl"


def test_the_captured_fbc_wins_over_the_url() -> None:
    assert form(page_url=URL).click.fbc == FBC


def test_no_fbc_without_cookie_or_fbclid() -> None:
    assert form(fbc=None).click.fbc is None


def test_a_booking_builds_its_fbc_too() -> None:
    record = make_booking_record(page_url=URL)
    booking = booking_from_record(record, NOW)
    assert isinstance(booking, Booking)
    ms = int(record["occurred_at"].timestamp() * 1000)
    assert booking.click.fbc == f"fb.1.{ms}.IwAR2FromTheUrl"


def test_the_phone_is_hashed_both_ways_at_intake() -> None:
    keys = form().keys
    assert (keys.phone_sha256, keys.phone_digits_sha256) == (PHONE_SHA, META_PHONE_SHA)


def test_the_same_phone_recovers_its_meta_hash_from_the_lead() -> None:
    rerouted = MatchKeys(EMAIL_SHA, PHONE_SHA)  # re-encoded: only the TikTok hash travels
    lead = MatchKeys(None, PHONE_SHA, None, META_PHONE_SHA)
    assert rerouted.fill(lead).phone_digits_sha256 == META_PHONE_SHA


def test_another_phone_never_takes_the_leads_meta_hash() -> None:
    other = MatchKeys(EMAIL_SHA, "0" * 64)
    lead = MatchKeys(None, PHONE_SHA, None, META_PHONE_SHA)
    filled = other.fill(lead)
    assert (filled.phone_sha256, filled.phone_digits_sha256) == ("0" * 64, None)


def test_a_missing_phone_takes_both_hashes_from_the_lead() -> None:
    lead = MatchKeys(None, PHONE_SHA, None, META_PHONE_SHA)
    filled = MatchKeys(EMAIL_SHA).fill(lead)
    assert (filled.phone_sha256, filled.phone_digits_sha256) == (PHONE_SHA, META_PHONE_SHA)
