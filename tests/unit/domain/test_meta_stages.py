"""Meta-only events from the core: Conversion Leads stages, in order, after the lead's creation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from streams.domain.lead import on_form, on_status_change
from streams.domain.meta_stages import is_meta_lead_id, stage_order
from streams.domain.types import Consent, Conversion, FormSubmit, LeadState, Outcome, Rules
from streams.meta.payload import DEFAULT_STAGE_MAP_META, build_event
from tests.unit.factories import (
    CLICK_AT,
    FORM_EVENT_ID,
    META_LEAD_ID,
    NOW,
    SOURCE,
    make_form_submit,
    make_purchase,
    make_rules,
    make_status_change,
)

META_ON = make_rules(stage_map_meta=DEFAULT_STAGE_MAP_META)


def _instant_form(**overrides: Any) -> FormSubmit:
    return make_form_submit(**{"meta_lead_id": META_LEAD_ID, **overrides})


def _events(outcome: Outcome) -> list[tuple[str, str | None]]:
    return [(c.event, c.destination) for c in outcome.conversions]


def _after(outcomes: list[Outcome]) -> LeadState:
    state = outcomes[-1].state
    assert state is not None
    return state


def _form(rules: Rules = META_ON, **overrides: Any) -> Outcome:
    return on_form(None, _instant_form(**overrides), rules, NOW)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (META_LEAD_ID, True),
        ("1234567890123456", True),
        ("12345678901234567", True),
        ("12345678901234", False),  # 14 digits
        ("123456789012345678", False),  # 18 digits
        ("52564589632154x", False),
        ("", False),
        (None, False),
    ],
)
def test_a_meta_lead_id_is_15_to_17_digits(text: str | None, ok: bool) -> None:
    assert is_meta_lead_id(text) is ok


def test_stage_order_is_the_first_stage_then_the_map_in_order_of_first_appearance() -> None:
    assert stage_order("Lead", DEFAULT_STAGE_MAP_META) == ("Lead", "QualifiedLead", "Purchase")
    custom = {"mql": "MQL", "sql": "SQL", "opp": "Opportunity", "won": "Converted", "paid": "MQL"}
    assert stage_order("Lead", custom) == ("Lead", "MQL", "SQL", "Opportunity", "Converted")
    assert stage_order("Lead", {"new": "Lead", "won": "Purchase"}) == ("Lead", "Purchase")


def test_an_instant_form_lead_sends_its_first_stage_with_the_form() -> None:
    out = _form()
    [conv] = out.conversions
    assert (conv.event, conv.destination) == ("Lead", "meta")
    assert conv.event_id == f"{FORM_EVENT_ID}:Lead"
    assert conv.source_id == FORM_EVENT_ID
    assert conv.event_time == CLICK_AT.replace(microsecond=0) + timedelta(seconds=1)
    assert conv.event_time > CLICK_AT  # later than the lead's creation
    assert out.state is not None and out.state.sent[f"meta:{FORM_EVENT_ID}:Lead"] == NOW


def test_the_first_stage_is_sent_once_even_by_a_second_form() -> None:
    first = _form()
    again = on_form(first.state, _instant_form(event_id="another-form"), META_ON, NOW)
    assert again.conversions == ()


@pytest.mark.parametrize(
    "rules",
    [make_rules(), META_ON],
    ids=["meta-off", "meta-on"],
)
def test_no_first_stage_for_a_web_lead_or_without_meta(rules: Rules) -> None:
    web = on_form(None, make_form_submit(), rules, NOW)
    assert web.conversions == ()
    if rules.stage_map_meta is None:
        assert _form(rules).conversions == ()


def test_no_first_stage_for_a_leadgen_id_meta_would_reject() -> None:
    assert _form(meta_lead_id="not-a-leadgen-id").conversions == ()


def test_denied_consent_sends_no_stage() -> None:
    out = _form(ad_consent=Consent.DENIED)
    assert out.conversions == ()
    assert out.counts["withheld_consent_denied"] == 1


def test_a_lead_that_jumps_to_won_sends_the_skipped_stage_first_in_order() -> None:
    form = _form()
    won = on_status_change(form.state, make_purchase(), SOURCE, META_ON, NOW)

    assert _events(won) == [("QualifiedLead", "meta"), ("Purchase", None)]
    filled, purchase = won.conversions
    assert filled.event_id == f"{FORM_EVENT_ID}:QualifiedLead"
    assert filled.event_time == purchase.event_time  # when the CRM moved the lead
    assert filled.value is None and filled.crm == "hubspot"
    assert won.counts["meta_stage_filled_in"] == 1
    assert _after([won]).sent[f"meta:{FORM_EVENT_ID}:QualifiedLead"] == NOW


def test_stages_sent_in_order_fill_in_nothing() -> None:
    form = _form()
    qualified = on_status_change(form.state, make_status_change(), SOURCE, META_ON, NOW)
    won = on_status_change(qualified.state, make_purchase(), SOURCE, META_ON, NOW)

    assert _events(qualified) == [("ApplicationApproval", None)]  # Meta maps it to QualifiedLead
    assert _events(won) == [("Purchase", None)]
    assert "meta_stage_filled_in" not in won.counts


def test_a_missing_first_stage_is_filled_in_too() -> None:
    """A lead stored before Meta was configured has no first stage yet."""
    form = on_form(None, _instant_form(), make_rules(), NOW)
    won = on_status_change(form.state, make_purchase(), SOURCE, META_ON, NOW)
    assert _events(won) == [("Lead", "meta"), ("QualifiedLead", "meta"), ("Purchase", None)]


def test_a_change_dated_before_the_lead_is_dated_after_its_creation() -> None:
    form = _form()
    early = make_status_change(changed_at=CLICK_AT - timedelta(minutes=3))
    out = on_status_change(form.state, early, SOURCE, META_ON, NOW)
    [conv] = out.conversions
    assert conv.event_time == CLICK_AT.replace(microsecond=0) + timedelta(seconds=1)


def test_web_leads_keep_their_change_times() -> None:
    form = on_form(None, make_form_submit(), META_ON, NOW)
    early = make_status_change(changed_at=CLICK_AT - timedelta(minutes=3))
    [conv] = on_status_change(form.state, early, SOURCE, META_ON, NOW).conversions
    assert conv.event_time == early.changed_at


def test_filled_in_stages_wait_for_a_valid_purchase() -> None:
    form = _form()
    bad = on_status_change(form.state, make_purchase(value=None), SOURCE, META_ON, NOW)
    assert bad.conversions == ()
    assert bad.counts["invalid_value"] == 1


def test_a_status_only_meta_maps_is_a_meta_only_conversion_sent_once() -> None:
    rules = make_rules(stage_map_meta={"mql": "MQL", "won": "Purchase"})
    form = on_form(None, make_form_submit(), rules, NOW)
    mql = make_status_change(change_id="c-mql", status="MQL")
    first = on_status_change(form.state, mql, SOURCE, rules, NOW)
    again = on_status_change(first.state, replace(mql, change_id="c-mql-2"), SOURCE, rules, NOW)

    [conv] = first.conversions
    assert (conv.event, conv.destination, conv.status) == ("MQL", "meta", "MQL")
    assert conv.event_id == f"{FORM_EVENT_ID}:MQL"
    assert again.conversions == ()
    assert again.counts["duplicate_conversion"] == 1
    ignored = on_status_change(form.state, make_status_change(status="lost"), SOURCE, rules, NOW)
    assert ignored.counts["ignored_status"] == 1


def test_a_meta_only_event_never_hides_a_tiktok_event_of_the_same_name() -> None:
    rules = make_rules(stage_map_meta={"paid": "Purchase", "won": "Purchase"})
    form = on_form(None, make_form_submit(), rules, NOW)
    paid = make_purchase(change_id="c-paid", status="paid")
    meta_only = on_status_change(form.state, paid, SOURCE, rules, NOW)
    won = on_status_change(meta_only.state, make_purchase(), SOURCE, rules, NOW)

    assert _events(meta_only) == [("Purchase", "meta")]
    assert _events(won) == [("Purchase", None)]  # TikTok still gets its Purchase


def test_a_meta_only_status_is_ignored_when_meta_is_off() -> None:
    form = on_form(None, make_form_submit(), make_rules(), NOW)
    mql = make_status_change(status="mql")
    assert on_status_change(form.state, mql, SOURCE, make_rules(), NOW).conversions == ()


def test_the_meta_payload_of_each_stage_has_the_conversion_leads_shape() -> None:
    form = _form()
    won = on_status_change(form.state, make_purchase(), SOURCE, META_ON, NOW)
    convs: list[Conversion] = [*form.conversions, *won.conversions]
    bodies = [build_event(c, stage_map=DEFAULT_STAGE_MAP_META, now=NOW) for c in convs]

    assert [b["event_name"] for b in bodies] == ["Lead", "QualifiedLead", "Purchase"]  # type: ignore[index]
    assert [b["event_id"] for b in bodies] == [  # type: ignore[index]
        f"{FORM_EVENT_ID}:Lead",
        f"{FORM_EVENT_ID}:QualifiedLead",
        f"{FORM_EVENT_ID}:Purchase",
    ]
    for body in bodies:
        assert isinstance(body, dict)
        assert body["action_source"] == "system_generated"
        assert body["user_data"]["lead_id"] == int(META_LEAD_ID)
        assert body["custom_data"]["event_source"] == "crm"
        assert body["event_time"] > int(CLICK_AT.timestamp())
    times = [b["event_time"] for b in bodies]  # type: ignore[index]
    assert times == sorted(times)


def test_the_digits_phone_hash_is_stored_only_when_meta_is_configured() -> None:
    """Meta's phone form costs 75 bytes a lead; a TikTok-only deployment does not keep it."""
    form = make_form_submit()
    assert form.keys.phone_digits_sha256 is not None
    without = on_form(None, form, make_rules(), NOW).state
    with_meta = on_form(None, form, META_ON, NOW).state
    assert without is not None and without.context is not None
    assert with_meta is not None and with_meta.context is not None
    assert without.context.keys.phone_digits_sha256 is None
    assert without.context.keys.phone_sha256 == form.keys.phone_sha256
    assert with_meta.context.keys == form.keys
