from __future__ import annotations

import pytest

from streams.domain.identity import (
    CLAIMS_KEY,
    decode_claims,
    encode_claims,
    index_keys,
    next_lookup,
)
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


def test_claims_round_trip_in_order() -> None:
    claims = [("e:" + "a" * 64, "lead-1"), ("p:" + "b" * 64, "lead-1"), ("e:" + "a" * 64, "l2")]
    assert decode_claims(CLAIMS_KEY, encode_claims(claims)) == claims


def test_a_record_of_one_claim_is_read_as_before_batching() -> None:
    assert decode_claims("e:" + "a" * 64, b"lead-1") == [("e:" + "a" * 64, "lead-1")]
    assert decode_claims("e:" + "a" * 64, None) == []


@pytest.mark.parametrize("value", [b"not json", b'{"e:x": "l"}', b'[["e:x"]]', b"[[1, 2]]"])
def test_garbled_claims_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="identity claims|Expecting|Extra"):
        decode_claims(CLAIMS_KEY, value)
