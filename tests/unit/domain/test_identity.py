from __future__ import annotations

from streams.domain.identity import index_keys, next_lookup
from streams.domain.types import MatchKeys
from tests.unit.factories import make_booking, make_form_submit

E, P = "a" * 64, "b" * 64


def test_lookups_go_email_then_phone_then_none() -> None:
    booking = make_booking(lead_id=None, keys=MatchKeys(email_sha256=E, phone_sha256=P))
    assert next_lookup(booking) == f"e:{E}"
    assert next_lookup(booking, f"e:{E}") == f"p:{P}"
    assert next_lookup(booking, f"p:{P}") is None


def test_a_missing_key_is_skipped() -> None:
    phone_only = make_booking(lead_id=None, keys=MatchKeys(phone_sha256=P))
    assert next_lookup(phone_only) == f"p:{P}"
    assert next_lookup(make_booking(lead_id=None, keys=MatchKeys())) is None


def test_a_form_claims_its_hashed_email_and_phone() -> None:
    form = make_form_submit(keys=MatchKeys(email_sha256=E, phone_sha256=P))
    assert index_keys(form) == [f"e:{E}", f"p:{P}"]
    assert index_keys(make_form_submit(keys=MatchKeys(phone_sha256=P))) == [f"p:{P}"]
