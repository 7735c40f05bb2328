"""Stage map parsing, status lookup and deterministic event ids; consent; currencies."""

from __future__ import annotations

import pytest

from streams.domain.consent import withheld_reason
from streams.domain.currencies import TIKTOK_CURRENCIES, is_currency
from streams.domain.mapping import (
    DEFAULT_STAGE_MAP_CRM,
    DEFAULT_STAGE_MAP_WEB,
    conversion_event_id,
    event_for_status,
    parse_stage_map,
    stage_statuses,
)
from streams.domain.types import Consent, ConsentPolicy
from streams.local.sandbox.validation import ISO_4217_CURRENCIES as SANDBOX_CURRENCIES


def test_default_stage_maps() -> None:
    assert dict(DEFAULT_STAGE_MAP_WEB) == {
        "qualified": "ApplicationApproval",
        "sql": "ApplicationApproval",
        "won": "Purchase",
        "closed_won": "Purchase",
    }
    assert dict(DEFAULT_STAGE_MAP_CRM) == {
        "qualified": "QualifiedLead",
        "sql": "QualifiedLead",
        "won": "Purchase",
        "closed_won": "Purchase",
    }
    with pytest.raises(TypeError):
        DEFAULT_STAGE_MAP_WEB["lost"] = "Nope"  # type: ignore[index]


def test_a_stage_is_every_status_mapping_to_the_same_event() -> None:
    assert stage_statuses(" SQL ", DEFAULT_STAGE_MAP_WEB) == {"qualified", "sql"}
    assert stage_statuses("won", DEFAULT_STAGE_MAP_CRM) == {"won", "closed_won"}
    assert stage_statuses("lost", DEFAULT_STAGE_MAP_CRM) == frozenset()


def test_parse_stage_map_normalises_statuses_not_event_names() -> None:
    text = (
        '{" Qualified ": " QualifiedLead ", "WON": "Purchase", '
        '"demo": "Schedule", "won ": "Purchase"}'
    )
    assert parse_stage_map(text) == {
        "qualified": "QualifiedLead",
        "won": "Purchase",
        "demo": "Schedule",
    }
    assert parse_stage_map("{}") == {}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{qualified: QualifiedLead}", "not valid JSON"),
        ("", "not valid JSON"),
        ('["qualified"]', "must be a JSON object.*not list"),
        ('"qualified"', "must be a JSON object.*not str"),
        ('{"qualified": 1}', "'qualified': event name must be a string, not int"),
        ('{"qualified": null}', "not NoneType"),
        ('{"qualified": ["QualifiedLead"]}', "not list"),
        ('{"qualified": "  "}', "'qualified': event name is blank"),
        ('{" ": "QualifiedLead"}', "blank status"),
        ('{"won": "Purchase", "WON": "CompletePayment"}', "'WON' maps to 'CompletePayment'"),
    ],
)
def test_parse_stage_map_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_stage_map(text)


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("qualified", "QualifiedLead"),
        ("  QUALIFIED ", "QualifiedLead"),
        ("SQL", "QualifiedLead"),
        ("Closed_Won", "Purchase"),
        ("contacted", None),
        ("", None),
        ("   ", None),
    ],
)
def test_event_for_status(status: str, event: str | None) -> None:
    assert event_for_status(status, DEFAULT_STAGE_MAP_CRM) == event


def test_event_for_status_with_a_hand_built_map() -> None:
    assert event_for_status("demo booked", {" Demo Booked ": "Schedule"}) == "Schedule"
    assert event_for_status("demo", {" Demo Booked ": "Schedule"}) is None


@pytest.mark.parametrize(
    ("event", "form_event_id", "order_id", "expected"),
    [
        ("QualifiedLead", "ev-1", None, "ev-1:QualifiedLead"),
        ("QualifiedLead", "ev-1", "o-9", "ev-1:QualifiedLead"),
        ("Purchase", "ev-1", None, "ev-1:Purchase"),
        ("Purchase", "ev-1", "", "ev-1:Purchase"),
        ("Purchase", "ev-1", "o-9", "o-9:Purchase"),
        ("Purchase", None, "o-9", "o-9:Purchase"),
        ("Purchase", None, None, "lead-L1:Purchase"),
        ("QualifiedLead", None, None, "lead-L1:QualifiedLead"),
        ("QualifiedLead", "", None, "lead-L1:QualifiedLead"),
    ],
)
def test_conversion_event_id(
    event: str, form_event_id: str | None, order_id: str | None, expected: str
) -> None:
    assert (
        conversion_event_id(event, form_event_id=form_event_id, lead_id="L1", order_id=order_id)
        == expected
    )


def test_conversion_event_id_with_a_renamed_purchase_event() -> None:
    kwargs = {"form_event_id": "ev-1", "lead_id": "L1", "order_id": "o-9"}
    assert conversion_event_id("CompletePayment", **kwargs) == "ev-1:CompletePayment"  # type: ignore[arg-type]
    assert (
        conversion_event_id("CompletePayment", purchase_event="CompletePayment", **kwargs)  # type: ignore[arg-type]
        == "o-9:CompletePayment"
    )


@pytest.mark.parametrize(
    ("consent", "policy", "reason"),
    [
        (Consent.GRANTED, ConsentPolicy.GRANTED_ONLY, None),
        (Consent.GRANTED, ConsentPolicy.UNLESS_DENIED, None),
        (Consent.DENIED, ConsentPolicy.GRANTED_ONLY, "consent_denied"),
        (Consent.DENIED, ConsentPolicy.UNLESS_DENIED, "consent_denied"),
        (Consent.UNKNOWN, ConsentPolicy.GRANTED_ONLY, "consent_unknown"),
        (Consent.UNKNOWN, ConsentPolicy.UNLESS_DENIED, None),
    ],
)
def test_withheld_reason(consent: Consent, policy: ConsentPolicy, reason: str | None) -> None:
    assert withheld_reason(consent, policy) == reason


@pytest.mark.parametrize("code", ["EUR", "USD", "GBP", "JPY", "CHF", "VES", "BGN", "TZS", "AED"])
def test_currencies(code: str) -> None:
    assert is_currency(code)


@pytest.mark.parametrize(
    "code",
    ["eur", "EURO", "", " EUR", "XXX", "XTS", "XAU", "HRK", "DEM", "XCG", "GHS", "CHE", "SLL"],
)
def test_not_currencies(code: str) -> None:
    assert not is_currency(code)


def test_currency_codes_are_three_upper_case_letters() -> None:
    assert len(TIKTOK_CURRENCIES) == 67
    assert all(
        len(c) == 3 and c.isascii() and c.isalpha() and c.isupper() for c in TIKTOK_CURRENCIES
    )


def test_the_sandbox_accepts_exactly_the_currencies_leadstream_accepts() -> None:
    """One list (issue 13 §4); the sandbox keeps its own copy because it must stay standalone."""
    assert set(SANDBOX_CURRENCIES) == set(TIKTOK_CURRENCIES)
