"""The per-lead state machine: every path of on_form, on_status_change, on_booking and expire."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from streams.domain.lead import expire, on_booking, on_form, on_status_change
from streams.domain.types import (
    Booking,
    Channel,
    ClickContext,
    Consent,
    ConsentPolicy,
    Conversion,
    DeadItem,
    FormSubmit,
    LeadState,
    MatchKeys,
    Outcome,
    Rejection,
    Rules,
    SourceKind,
    StatusChange,
)
from tests.unit.factories import (
    BOOKING_SOURCE,
    EMAIL_SHA,
    EXTERNAL_ID_SHA,
    FBC,
    FBP,
    FORM_EVENT_ID,
    FULL_KEYS,
    IP,
    LEAD_ID,
    NOW,
    PAGE_URL,
    PHONE_SHA,
    SOURCE,
    TTCLID,
    TTP,
    USER_AGENT,
    make_booking,
    make_context,
    make_form_submit,
    make_pending,
    make_purchase,
    make_rules,
    make_state,
    make_status_change,
)

RULES = make_rules()
STORED_KEYS = replace(FULL_KEYS, phone_digits_sha256=None)
"""A form's keys as a lead without Meta stores them: Meta's digits-only phone hash is dropped."""
QL_ID = f"{FORM_EVENT_ID}:ApplicationApproval"
MINUTE = timedelta(minutes=1)


def stored(form: FormSubmit | None = None, rules: Rules = RULES) -> LeadState:
    """The state after the lead's form was stored an hour ago."""
    outcome = on_form(None, form or make_form_submit(), rules, NOW - timedelta(hours=1))
    assert outcome.state is not None
    return outcome.state


def only(outcome: Outcome) -> Conversion:
    assert len(outcome.conversions) == 1, outcome
    return outcome.conversions[0]


# --- on_form ------------------------------------------------------------------------------------


def test_first_form_stores_the_click_context() -> None:
    outcome = on_form(None, make_form_submit(), RULES, NOW)
    assert outcome == Outcome(
        state=LeadState(
            lead_id=LEAD_ID,
            context=make_context(keys=STORED_KEYS),
            seen={f"f:{FORM_EVENT_ID}": NOW},
            updated_at=NOW,
        ),
        counts={"form_stored": 1},
    )


def test_redelivered_form_is_a_duplicate_and_changes_nothing() -> None:
    state = stored()
    outcome = on_form(state, make_form_submit(ttclid="other"), RULES, NOW)
    assert outcome.state is state
    assert outcome.counts == {"duplicate_input": 1}
    assert outcome.conversions == () and outcome.dead == ()


def test_form_seen_longer_ago_than_the_dedup_window_is_processed_again() -> None:
    state = stored()  # seen an hour ago
    assert on_form(state, make_form_submit(), RULES, NOW).counts == {"duplicate_input": 1}
    rules = make_rules(input_dedup_window=timedelta(hours=1))
    outcome = on_form(state, make_form_submit(), rules, NOW)
    assert outcome.counts == {"form_stored": 1}
    assert outcome.state is not None and outcome.state.seen[f"f:{FORM_EVENT_ID}"] == NOW


def test_later_form_only_fills_empty_context_fields() -> None:
    first = make_form_submit(
        keys=MatchKeys(email_sha256=EMAIL_SHA),
        ttclid=None,
        referrer_url=None,
        ad_consent=Consent.UNKNOWN,
    )
    state = stored(first)
    second = make_form_submit(
        event_id="second-submit",
        occurred_at=NOW - MINUTE,
        page_url="https://example.com/other",
        keys=MatchKeys("f" * 64, PHONE_SHA, None),
        ip="192.0.2.1",
        tiktok_lead_id="7312",
        limited_data_use=True,
    )
    outcome = on_form(state, second, RULES, NOW)
    assert outcome.counts == {"form_stored": 1}
    assert outcome.state is not None
    assert outcome.state.context == make_context(
        keys=MatchKeys(EMAIL_SHA, PHONE_SHA, None),
        tiktok_lead_id="7312",
        limited_data_use=True,
    )
    assert set(outcome.state.seen) == {f"f:{FORM_EVENT_ID}", "f:second-submit"}


@pytest.mark.parametrize(
    ("first", "later", "merged"),
    [
        (Consent.GRANTED, Consent.DENIED, Consent.DENIED),
        (Consent.DENIED, Consent.GRANTED, Consent.DENIED),
        (Consent.UNKNOWN, Consent.GRANTED, Consent.GRANTED),
        (Consent.GRANTED, Consent.UNKNOWN, Consent.GRANTED),
        (Consent.UNKNOWN, Consent.UNKNOWN, Consent.UNKNOWN),
    ],
)
def test_later_form_consent_takes_the_stricter_answer(
    first: Consent, later: Consent, merged: Consent
) -> None:
    state = stored(make_form_submit(ad_consent=first))
    outcome = on_form(state, make_form_submit(event_id="again", ad_consent=later), RULES, NOW)
    assert outcome.state is not None and outcome.state.context is not None
    assert outcome.state.context.click.ad_consent is merged


def test_status_before_form_waits_then_is_sent_enriched() -> None:
    change = make_status_change(keys=MatchKeys(email_sha256="e" * 64))
    waiting = on_status_change(None, change, SOURCE, RULES, NOW - timedelta(hours=1))
    assert waiting.counts == {"waiting_for_form": 1}
    assert waiting.conversions == ()
    assert waiting.state is not None
    assert [p.item for p in waiting.state.pending] == [change]
    assert waiting.state.pending[0].source == SOURCE
    assert waiting.state.pending[0].received_at == NOW - timedelta(hours=1)

    outcome = on_form(waiting.state, make_form_submit(), RULES, NOW)
    assert outcome.counts == {"form_stored": 1, "emitted": 1}
    conv = only(outcome)
    assert conv.event_id == QL_ID and conv.matched is True
    assert conv.keys == STORED_KEYS  # the form's keys win over the change's own
    assert outcome.state is not None and outcome.state.pending == ()
    assert outcome.state.sent == {QL_ID: NOW, "stage:qualified": NOW}


def test_form_releases_waiting_inputs_in_arrival_order() -> None:
    state: LeadState | None = None
    inputs: list[StatusChange | Booking] = [
        make_booking(),
        make_status_change(change_id="c-1", status="contacted"),
        make_purchase(change_id="c-2"),
        make_status_change(change_id="c-3"),
    ]
    for i, item in enumerate(inputs):
        at = NOW - timedelta(hours=2) + i * MINUTE
        if isinstance(item, Booking):
            state = on_booking(state, item, BOOKING_SOURCE, RULES, at).state
        else:
            state = on_status_change(state, item, SOURCE, RULES, at).state
    assert state is not None and len(state.pending) == 3  # "contacted" never waits
    outcome = on_form(state, make_form_submit(), RULES, NOW)
    assert [c.event for c in outcome.conversions] == ["Schedule", "Purchase", "ApplicationApproval"]
    assert outcome.counts == {"form_stored": 1, "emitted": 3}


def test_waiting_status_whose_stage_was_unmapped_meanwhile_is_ignored() -> None:
    waiting = on_status_change(None, make_status_change(), SOURCE, RULES, NOW - MINUTE)
    rules = make_rules(stage_map_web={"won": "Purchase"}, stage_map_crm={"won": "Purchase"})
    outcome = on_form(waiting.state, make_form_submit(), rules, NOW)
    assert outcome.conversions == ()
    assert outcome.counts == {"form_stored": 1, "ignored_status": 1}


# --- on_status_change ---------------------------------------------------------------------------


def test_qualified_status_becomes_an_enriched_conversion() -> None:
    state = stored()
    change = make_status_change(keys=MatchKeys(email_sha256="e" * 64, phone_sha256="f" * 64))
    change = replace(change, changed_at=NOW - MINUTE)
    outcome = on_status_change(state, change, SOURCE, RULES, NOW)
    assert outcome.counts == {"emitted": 1}
    assert outcome.dead == ()
    assert only(outcome) == Conversion(
        event_id=QL_ID,
        event="ApplicationApproval",
        event_time=NOW - MINUTE,
        lead_id=LEAD_ID,
        source_kind=SourceKind.STATUS_CHANGE,
        source_id="c-1",
        channel=Channel.WEB,
        matched=True,
        created_at=NOW,
        keys=STORED_KEYS,
        click=ClickContext(
            ttclid=TTCLID,
            ttp=TTP,
            ip=IP,
            user_agent=USER_AGENT,
            page_url=PAGE_URL,
            referrer_url="https://www.tiktok.com/",
            tiktok_lead_id=None,
            ad_consent=Consent.GRANTED,
            limited_data_use=False,
            locale="en-GB",
            fbc=FBC,
            fbp=FBP,
        ),
        crm="hubspot",
        status="qualified",  # each destination maps the stage with its own map (issue 17)
    )
    assert outcome.state == replace(
        state,
        sent={QL_ID: NOW, "stage:qualified": NOW},
        seen={**state.seen, "s:c-1": NOW},
        updated_at=NOW,
    )


def test_change_keys_fill_what_the_form_lacked() -> None:
    state = stored(make_form_submit(keys=MatchKeys(external_id_sha256=EXTERNAL_ID_SHA)))
    change = make_status_change(keys=MatchKeys(EMAIL_SHA, PHONE_SHA, "0" * 64))
    conv = only(on_status_change(state, change, SOURCE, RULES, NOW))
    assert conv.keys == MatchKeys(EMAIL_SHA, PHONE_SHA, EXTERNAL_ID_SHA)


def test_redelivered_change_is_a_duplicate_input() -> None:
    first = on_status_change(stored(), make_status_change(), SOURCE, RULES, NOW - MINUTE)
    again = on_status_change(first.state, make_status_change(), SOURCE, RULES, NOW)
    assert again.state is first.state
    assert again.counts == {"duplicate_input": 1} and again.conversions == ()


def test_unmapped_status_is_ignored_but_remembered() -> None:
    state = stored()
    outcome = on_status_change(state, make_status_change(status="contacted"), SOURCE, RULES, NOW)
    assert outcome.counts == {"ignored_status": 1} and outcome.conversions == ()
    assert outcome.state == replace(state, seen={**state.seen, "s:c-1": NOW}, updated_at=NOW)


def test_status_flapping_sends_one_qualified_lead() -> None:
    state: LeadState | None = stored()
    emitted: list[Conversion] = []
    counts: list[dict[str, int]] = []
    for i, status in enumerate(["qualified", "contacted", "qualified", "SQL"]):
        change = make_status_change(change_id=f"c-{i}", status=status)
        outcome = on_status_change(state, change, SOURCE, RULES, NOW + i * MINUTE)
        state = outcome.state
        emitted += outcome.conversions
        counts.append(dict(outcome.counts))
    assert [c.event_id for c in emitted] == [QL_ID]
    assert counts == [
        {"emitted": 1},
        {"ignored_status": 1},
        {"duplicate_conversion": 1},
        {"duplicate_conversion": 1},
    ]


def test_event_sent_without_the_form_is_not_sent_again_with_it() -> None:
    state = replace(
        stored(), sent={f"lead-{LEAD_ID}:ApplicationApproval": NOW - timedelta(hours=1)}
    )
    outcome = on_status_change(state, make_status_change(), SOURCE, RULES, NOW)
    assert outcome.counts == {"duplicate_conversion": 1}


def test_ledger_entry_older_than_retention_no_longer_blocks() -> None:
    state = replace(stored(), sent={QL_ID: NOW - timedelta(days=90)})
    outcome = on_status_change(state, make_status_change(), SOURCE, RULES, NOW)
    assert outcome.counts == {"emitted": 1}
    assert outcome.state is not None and outcome.state.sent[QL_ID] == NOW
    state = replace(stored(), sent={QL_ID: NOW - timedelta(days=90) + MINUTE})
    outcome = on_status_change(state, make_status_change(), SOURCE, RULES, NOW)
    assert outcome.counts == {"duplicate_conversion": 1}


def test_replaying_every_input_sends_nothing_new() -> None:
    inputs: list[FormSubmit | StatusChange | Booking] = [
        make_status_change(change_id="c-1"),
        make_form_submit(),
        make_booking(),
        make_status_change(change_id="c-2", status="contacted"),
        make_purchase(change_id="c-3", order_id="o-1"),
        make_purchase(change_id="c-4", order_id="o-2"),
    ]
    state: LeadState | None = None
    first: list[str] = []
    for pass_no in range(2):
        for i, item in enumerate(inputs):
            at = NOW + (pass_no * 10 + i) * MINUTE
            if isinstance(item, FormSubmit):
                outcome = on_form(state, item, RULES, at)
            elif isinstance(item, Booking):
                outcome = on_booking(state, item, BOOKING_SOURCE, RULES, at)
            else:
                outcome = on_status_change(state, item, SOURCE, RULES, at)
            state = outcome.state
            if pass_no == 0:
                first += [c.event_id for c in outcome.conversions]
            else:
                assert outcome.conversions == ()
                assert outcome.counts == {"duplicate_input": 1}
    assert first == [QL_ID, "pixel-schedule-1", "o-1:Purchase", "o-2:Purchase"]


def test_purchase_is_sent_with_value_and_currency() -> None:
    change = make_purchase(currency="eur", keys=MatchKeys())
    conv = only(on_status_change(stored(), change, SOURCE, RULES, NOW))
    assert (conv.event, conv.event_id) == ("Purchase", f"{FORM_EVENT_ID}:Purchase")
    assert (conv.value, conv.currency, conv.order_id) == (1200.0, "EUR", None)


def test_purchase_with_order_id_uses_an_order_based_event_id() -> None:
    state = stored()
    first = on_status_change(state, make_purchase(order_id="o-1"), SOURCE, RULES, NOW)
    assert only(first).event_id == "o-1:Purchase"
    assert only(first).order_id == "o-1"
    second = on_status_change(
        first.state, make_purchase(change_id="c-9", order_id="o-2"), SOURCE, RULES, NOW
    )
    assert only(second).event_id == "o-2:Purchase"
    same = on_status_change(
        second.state, make_purchase(change_id="c-10", order_id="o-1"), SOURCE, RULES, NOW
    )
    assert same.counts == {"duplicate_conversion": 1}


@pytest.mark.parametrize(
    ("value", "currency", "field"),
    [
        (None, "EUR", "value"),
        (0.0, "EUR", "value"),
        (-5.0, "EUR", "value"),
        (100.0, None, "currency"),
        (100.0, "XYZ", "currency"),
        (None, None, "value"),
    ],
)
def test_purchase_without_positive_value_and_currency_is_dead_lettered(
    value: float | None, currency: str | None, field: str
) -> None:
    state = stored()
    change = make_purchase(value=value, currency=currency)
    outcome = on_status_change(state, change, SOURCE, RULES, NOW)
    assert outcome.conversions == ()
    assert outcome.counts == {"invalid_value": 1}
    assert outcome.dead == (DeadItem(change, SOURCE, outcome.dead[0].rejection),)
    rejection = outcome.dead[0].rejection
    assert (rejection.reason, rejection.field) == ("invalid_value", field)
    assert "change_id=c-won" in rejection.message
    assert f"value={value!r}, currency={currency!r}" in rejection.message
    assert outcome.state is not None and outcome.state.sent == {}
    fixed = on_status_change(outcome.state, make_purchase(change_id="c-fix"), SOURCE, RULES, NOW)
    assert fixed.counts == {"emitted": 1}


def test_a_renamed_purchase_event_is_the_one_validated() -> None:
    rules = make_rules(stage_map_web={"won": "CompletePayment"}, purchase_event="CompletePayment")
    outcome = on_status_change(stored(), make_purchase(value=None), SOURCE, rules, NOW)
    assert outcome.counts == {"invalid_value": 1}
    rules = make_rules(stage_map_web={"won": "CompletePayment"})
    outcome = on_status_change(stored(), make_purchase(value=None), SOURCE, rules, NOW)
    assert outcome.counts == {"emitted": 1}


def test_value_without_currency_is_dropped_outside_purchase() -> None:
    change = make_status_change(value=10.0)
    conv = only(on_status_change(stored(), change, SOURCE, RULES, NOW))
    assert (conv.value, conv.currency) == (None, None)
    change = make_status_change(value=10.0, currency="usd")
    conv = only(on_status_change(stored(), change, SOURCE, RULES, NOW))
    assert (conv.value, conv.currency) == (10.0, "USD")


@pytest.mark.parametrize(
    ("consent", "policy", "counts"),
    [
        (Consent.DENIED, ConsentPolicy.GRANTED_ONLY, {"withheld_consent_denied": 1}),
        (Consent.DENIED, ConsentPolicy.UNLESS_DENIED, {"withheld_consent_denied": 1}),
        (Consent.UNKNOWN, ConsentPolicy.GRANTED_ONLY, {"withheld_consent_unknown": 1}),
        (Consent.UNKNOWN, ConsentPolicy.UNLESS_DENIED, {"emitted": 1}),
        (Consent.GRANTED, ConsentPolicy.GRANTED_ONLY, {"emitted": 1}),
    ],
)
def test_consent_policy(consent: Consent, policy: ConsentPolicy, counts: dict[str, int]) -> None:
    rules = make_rules(consent_policy=policy)
    state = stored(make_form_submit(ad_consent=consent), rules)
    outcome = on_status_change(state, make_status_change(), SOURCE, rules, NOW)
    assert outcome.counts == counts
    assert outcome.state is not None
    assert (QL_ID in outcome.state.sent) is ("emitted" in counts)
    for conv in outcome.conversions:
        assert conv.click.ad_consent is consent


def test_withheld_purchase_is_not_dead_lettered() -> None:
    state = stored(make_form_submit(ad_consent=Consent.DENIED))
    outcome = on_status_change(state, make_purchase(value=None), SOURCE, RULES, NOW)
    assert outcome.dead == () and outcome.counts == {"withheld_consent_denied": 1}


@pytest.mark.parametrize(
    ("tiktok_lead_id", "crm_routing", "channel"),
    [
        ("7312", True, Channel.CRM),
        ("7312", False, Channel.WEB),
        (None, True, Channel.WEB),
        (None, False, Channel.WEB),
    ],
)
def test_crm_routing(tiktok_lead_id: str | None, crm_routing: bool, channel: Channel) -> None:
    rules = make_rules(crm_routing=crm_routing)
    state = stored(make_form_submit(tiktok_lead_id=tiktok_lead_id), rules)
    conv = only(on_status_change(state, make_status_change(), SOURCE, rules, NOW))
    assert conv.channel is channel
    assert conv.click.tiktok_lead_id == tiktok_lead_id


@pytest.mark.parametrize(
    ("tiktok_lead_id", "event"), [(None, "ApplicationApproval"), ("7312", "QualifiedLead")]
)
def test_each_route_has_its_own_stage_map(tiktok_lead_id: str | None, event: str) -> None:
    rules = make_rules(crm_routing=True)
    state = stored(make_form_submit(tiktok_lead_id=tiktok_lead_id), rules)
    conv = only(on_status_change(state, make_status_change(status="SQL"), SOURCE, rules, NOW))
    assert (conv.event, conv.event_id) == (event, f"{FORM_EVENT_ID}:{event}")


def test_a_status_mapped_only_on_the_other_route_is_ignored() -> None:
    rules = make_rules(stage_map_crm={"demo": "DemoBooked"})
    outcome = on_status_change(stored(), make_status_change(status="demo"), SOURCE, rules, NOW)
    assert outcome.conversions == () and outcome.counts == {"ignored_status": 1}


def test_a_stage_is_not_sent_twice_when_the_mapping_changes_between_two_changes() -> None:
    before = make_rules(stage_map_web={"qualified": "Contact", "sql": "Contact"})
    first = on_status_change(stored(), make_status_change(status="qualified"), SOURCE, before, NOW)
    assert only(first).event == "Contact"
    later = NOW + MINUTE
    change = make_status_change(change_id="chg-2", status="sql")
    outcome = on_status_change(first.state, change, SOURCE, RULES, later)  # now ApplicationApproval
    assert outcome.conversions == ()
    assert outcome.counts == {"duplicate_conversion": 1}


def test_a_ledger_from_before_stages_still_stops_the_renamed_event() -> None:
    """A web lead that sent QualifiedLead (the old default) does not send ApplicationApproval."""
    state = replace(stored(), sent={f"{FORM_EVENT_ID}:QualifiedLead": NOW - MINUTE})
    outcome = on_status_change(state, make_status_change(status="sql"), SOURCE, RULES, NOW)
    assert outcome.counts == {"duplicate_conversion": 1}


def test_purchases_of_two_orders_are_two_stages_not_one() -> None:
    first = on_status_change(stored(), make_purchase(order_id="o-1"), SOURCE, RULES, NOW)
    second = make_purchase(change_id="chg-9", order_id="o-2")
    outcome = on_status_change(first.state, second, SOURCE, RULES, NOW + MINUTE)
    assert only(outcome).event_id == "o-2:Purchase"


def test_change_and_booking_ids_do_not_shadow_each_other() -> None:
    first = on_booking(stored(), make_booking(booking_id="x-1"), BOOKING_SOURCE, RULES, NOW)
    outcome = on_status_change(first.state, make_status_change(change_id="x-1"), SOURCE, RULES, NOW)
    assert outcome.counts == {"emitted": 1}


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        on_form(None, make_form_submit(), RULES, datetime(2025, 3, 14, 12))  # noqa: DTZ001


def test_state_times_are_milliseconds() -> None:
    now = NOW + timedelta(microseconds=123_456)
    outcome = on_status_change(stored(), make_status_change(), SOURCE, RULES, now)
    assert outcome.state is not None
    assert outcome.state.updated_at == NOW + timedelta(milliseconds=123)
    assert only(outcome).created_at == NOW + timedelta(milliseconds=123)
    assert outcome.state.updated_at.tzinfo is UTC


# --- on_booking ---------------------------------------------------------------------------------


def test_booking_becomes_a_schedule_with_its_own_click_data_first() -> None:
    rules = make_rules(crm_routing=True)
    state = stored(make_form_submit(tiktok_lead_id="7312", limited_data_use=True), rules)
    booking = make_booking(keys=MatchKeys(email_sha256="e" * 64), ttp="booking-ttp")
    outcome = on_booking(state, booking, BOOKING_SOURCE, rules, NOW)
    assert outcome.counts == {"emitted": 1}
    assert only(outcome) == Conversion(
        event_id="pixel-schedule-1",
        event="Schedule",
        event_time=booking.occurred_at,
        lead_id=LEAD_ID,
        source_kind=SourceKind.BOOKING,
        source_id="bk-1",
        channel=Channel.WEB,  # the Pixel event id only dedups on the pixel
        matched=True,
        created_at=NOW,
        keys=MatchKeys("e" * 64, PHONE_SHA, EXTERNAL_ID_SHA, None),  # no Meta: no digits hash
        click=ClickContext(
            ttclid=TTCLID,
            ttp="booking-ttp",
            ip="198.51.100.7",
            user_agent="BookingAgent/1.0",
            page_url="https://example.com/book",
            referrer_url="https://www.tiktok.com/",
            tiktok_lead_id="7312",
            ad_consent=Consent.GRANTED,
            limited_data_use=True,
            locale="en-GB",
            fbc=FBC,  # the form's Meta click ids, as the booking has none of its own
            fbp=FBP,
        ),
        value=50.0,
        currency="GBP",
    )
    assert outcome.state is not None
    assert outcome.state.sent["pixel-schedule-1"] == NOW
    assert outcome.state.seen["b:bk-1"] == NOW


def test_booking_without_own_click_data_inherits_the_forms() -> None:
    booking = make_booking(page_url=None, ip=None, user_agent=None, value=20.0, currency=None)
    conv = only(on_booking(stored(), booking, BOOKING_SOURCE, RULES, NOW))
    assert (conv.click.page_url, conv.click.ip, conv.click.user_agent) == (PAGE_URL, IP, USER_AGENT)
    assert (conv.value, conv.currency) == (None, None)


def test_redelivered_booking_is_a_duplicate_input() -> None:
    first = on_booking(stored(), make_booking(), BOOKING_SOURCE, RULES, NOW - MINUTE)
    again = on_booking(first.state, make_booking(), BOOKING_SOURCE, RULES, NOW)
    assert again.state is first.state and again.counts == {"duplicate_input": 1}


def test_second_booking_with_the_same_pixel_event_id_is_a_duplicate_conversion() -> None:
    first = on_booking(stored(), make_booking(), BOOKING_SOURCE, RULES, NOW - MINUTE)
    again = on_booking(first.state, make_booking(booking_id="bk-2"), BOOKING_SOURCE, RULES, NOW)
    assert again.counts == {"duplicate_conversion": 1}


def test_booking_for_a_lead_without_form_waits() -> None:
    outcome = on_booking(None, make_booking(), BOOKING_SOURCE, RULES, NOW)
    assert outcome.counts == {"waiting_for_form": 1}
    assert outcome.state is not None and outcome.state.lead_id == LEAD_ID
    assert outcome.state.pending == (make_pending(make_booking(), NOW),)


def test_unresolved_booking_is_kept_under_its_booking_id() -> None:
    outcome = on_booking(None, make_booking(lead_id=None), BOOKING_SOURCE, RULES, NOW)
    assert outcome.state is not None and outcome.state.lead_id == "bk-1"
    state = LeadState(lead_id="matched-lead")
    outcome = on_booking(state, make_booking(lead_id=None), BOOKING_SOURCE, RULES, NOW)
    assert outcome.state is not None and outcome.state.lead_id == "matched-lead"


def test_booking_consent_comes_from_the_form() -> None:
    state = stored(make_form_submit(ad_consent=Consent.DENIED))
    outcome = on_booking(state, make_booking(), BOOKING_SOURCE, RULES, NOW)
    assert outcome.counts == {"withheld_consent_denied": 1}


def test_input_already_pending_is_not_queued_twice() -> None:
    waiting = on_status_change(None, make_status_change(), SOURCE, RULES, NOW - MINUTE)
    assert waiting.state is not None
    forgotten = replace(waiting.state, seen={})  # seen entry gone, still pending
    outcome = on_status_change(forgotten, make_status_change(), SOURCE, RULES, NOW)
    assert outcome.counts == {"duplicate_input": 1}
    assert outcome.state is not None and len(outcome.state.pending) == 1


# --- expire -------------------------------------------------------------------------------------

UNLESS_DENIED = make_rules(consent_policy=ConsentPolicy.UNLESS_DENIED)
WAITED = NOW - timedelta(hours=24)


def waiting_state(*items: StatusChange | Booking, received_at: datetime = WAITED) -> LeadState:
    return LeadState(
        lead_id=LEAD_ID,
        pending=tuple(make_pending(item, received_at) for item in items),
        seen={"s:c-1": received_at},
        updated_at=received_at,
    )


def test_expire_with_nothing_due_returns_the_same_state() -> None:
    state = waiting_state(make_status_change(), received_at=WAITED + MINUTE)
    outcome = expire(state, RULES, NOW)
    assert outcome == Outcome(state=state)
    assert outcome.state is state
    typical = make_state()
    assert expire(typical, RULES, NOW).state is typical


def test_expired_status_is_sent_with_its_own_keys_unmatched() -> None:
    change = make_status_change(keys=MatchKeys(email_sha256=EMAIL_SHA))
    state = waiting_state(change)
    outcome = expire(state, UNLESS_DENIED, NOW)
    assert outcome.counts == {"expired_sent": 1}
    conv = only(outcome)
    assert conv.event_id == f"lead-{LEAD_ID}:ApplicationApproval"
    assert conv.matched is False and conv.channel is Channel.WEB
    assert conv.click.ad_consent is Consent.UNKNOWN
    assert conv.keys == MatchKeys(email_sha256=EMAIL_SHA)
    assert conv.click.ttclid is None and conv.click.page_url is None
    assert conv.crm == "hubspot"
    assert outcome.state == replace(
        state, pending=(), sent={conv.event_id: NOW, "stage:qualified": NOW}, updated_at=NOW
    )


def test_expired_input_follows_the_consent_policy() -> None:
    state = waiting_state(make_status_change(keys=MatchKeys(email_sha256=EMAIL_SHA)))
    outcome = expire(state, RULES, NOW)
    assert outcome.counts == {"withheld_consent_unknown": 1}
    assert outcome.conversions == ()
    assert outcome.state is not None
    assert outcome.state.pending == () and outcome.state.sent == {}


def test_expired_status_without_keys_is_dead_lettered_unmatched() -> None:
    change = make_status_change()
    outcome = expire(waiting_state(change), UNLESS_DENIED, NOW)
    assert outcome.conversions == ()
    assert outcome.counts == {"unmatched_lead": 1}
    (dead,) = outcome.dead
    assert dead.item == change and dead.source == SOURCE
    assert dead.rejection == Rejection(
        "unmatched_lead",
        f"lead {LEAD_ID}: LeadStatusChanged change_id=c-1 waited 1 day, 0:00:00 for the lead's "
        "form submit and has no match keys of its own",
    )


def test_expired_booking_with_only_click_data_is_sent() -> None:
    booking = make_booking(keys=MatchKeys(), ip=None, ttclid="tt-1")
    outcome = expire(waiting_state(booking), UNLESS_DENIED, NOW)
    conv = only(outcome)
    assert conv.event_id == "pixel-schedule-1" and conv.matched is False
    click = conv.click
    assert (click.ttclid, click.page_url, conv.value) == ("tt-1", "https://example.com/book", 50.0)


@pytest.mark.parametrize("has", ["ttp", "ip", "keys", None])
def test_expired_booking_needs_something_to_match_on(has: str | None) -> None:
    booking = make_booking(keys=MatchKeys(), ip=None, ttclid=None, ttp=None)
    if has == "ttp":
        booking = replace(booking, click=replace(booking.click, ttp="p"))
    elif has == "ip":
        booking = replace(booking, click=replace(booking.click, ip=IP))
    elif has == "keys":
        booking = replace(booking, keys=MatchKeys(phone_sha256=PHONE_SHA))
    outcome = expire(waiting_state(booking), UNLESS_DENIED, NOW)
    if has is None:
        assert outcome.counts == {"unmatched_lead": 1}
        assert "BookingCreated booking_id=bk-1" in outcome.dead[0].rejection.message
        assert outcome.dead[0].source == BOOKING_SOURCE
    else:
        assert outcome.counts == {"expired_sent": 1}


def test_only_due_inputs_leave_the_wait() -> None:
    late = make_status_change(change_id="c-2", keys=MatchKeys(EMAIL_SHA))
    state = LeadState(
        lead_id=LEAD_ID,
        pending=(
            make_pending(make_purchase(keys=MatchKeys(EMAIL_SHA)), WAITED),
            make_pending(late, WAITED + MINUTE),
        ),
        updated_at=WAITED + MINUTE,
    )
    outcome = expire(state, UNLESS_DENIED, NOW)
    assert [c.event_id for c in outcome.conversions] == [f"lead-{LEAD_ID}:Purchase"]
    assert outcome.state is not None
    assert [p.item for p in outcome.state.pending] == [late]


def test_expired_purchase_without_value_is_invalid() -> None:
    purchase = make_purchase(value=None, keys=MatchKeys(EMAIL_SHA))
    outcome = expire(waiting_state(purchase), UNLESS_DENIED, NOW)
    assert outcome.counts == {"invalid_value": 1}


def test_expired_event_already_sent_is_a_duplicate() -> None:
    state = replace(
        waiting_state(make_status_change(keys=MatchKeys(EMAIL_SHA))),
        sent={f"lead-{LEAD_ID}:ApplicationApproval": NOW - timedelta(days=3)},
    )
    outcome = expire(state, UNLESS_DENIED, NOW)
    assert outcome.counts == {"duplicate_conversion": 1}


def test_expired_status_no_longer_mapped_is_ignored() -> None:
    state = waiting_state(make_status_change(keys=MatchKeys(EMAIL_SHA)))
    outcome = expire(state, make_rules(stage_map_web={}, stage_map_crm={}), NOW)
    assert outcome.counts == {"ignored_status": 1}


def test_form_arriving_after_the_wait_does_not_resend() -> None:
    sent = expire(waiting_state(make_status_change(keys=MatchKeys(EMAIL_SHA))), UNLESS_DENIED, NOW)
    assert len(sent.conversions) == 1
    outcome = on_form(sent.state, make_form_submit(), UNLESS_DENIED, NOW + MINUTE)
    assert outcome.conversions == () and outcome.counts == {"form_stored": 1}
    flap = on_status_change(
        outcome.state, make_status_change(change_id="c-2"), SOURCE, UNLESS_DENIED, NOW + 2 * MINUTE
    )
    assert flap.counts == {"duplicate_conversion": 1}


def test_expire_prunes_old_ledger_and_seen_entries() -> None:
    state = make_state(
        sent={"old:ApplicationApproval": NOW - timedelta(days=90), "new:Purchase": NOW},
        seen={"s:old": NOW - timedelta(days=91), "s:new": NOW - timedelta(days=89)},
        updated_at=NOW - timedelta(days=10),
    )
    outcome = expire(state, RULES, NOW)
    assert outcome.counts == {"pruned": 2}
    assert outcome.state == replace(
        state, sent={"new:Purchase": NOW}, seen={"s:new": NOW - timedelta(days=89)}
    )
    assert outcome.state is not None and outcome.state.updated_at == state.updated_at


def test_idle_lead_is_deleted_after_its_retention() -> None:
    state = make_state(updated_at=NOW - timedelta(days=90), sent={}, seen={})
    outcome = expire(state, RULES, NOW)
    assert outcome.state is None
    assert outcome.counts == {"lead_deleted": 1}
    recent = make_state(updated_at=NOW - timedelta(days=89), sent={}, seen={})
    assert expire(recent, RULES, NOW).state is recent


def test_idle_lead_without_updated_at_ages_from_its_click() -> None:
    state = make_state(
        updated_at=None,
        context=make_context(occurred_at=NOW - timedelta(days=91)),
        sent={},
        seen={f"f:{FORM_EVENT_ID}": NOW - timedelta(days=91)},
    )
    outcome = expire(state, RULES, NOW)
    assert outcome.state is None
    assert outcome.counts == {"pruned": 1, "lead_deleted": 1}


def test_lead_with_waiting_inputs_is_not_deleted() -> None:
    state = make_state(
        context=None,
        updated_at=NOW - timedelta(days=200),
        sent={},
        seen={},
        pending=(make_pending(make_status_change(), NOW - MINUTE),),
    )
    assert expire(state, RULES, NOW).state is state


def test_lead_without_context_is_deleted_when_nothing_is_left() -> None:
    state = LeadState(lead_id=LEAD_ID, seen={"s:c-1": NOW - timedelta(days=90)}, updated_at=NOW)
    outcome = expire(state, RULES, NOW)
    assert outcome.state is None
    assert outcome.counts == {"pruned": 1, "lead_deleted": 1}
    kept = LeadState(lead_id=LEAD_ID, sent={"lead-x:ApplicationApproval": NOW}, updated_at=NOW)
    assert expire(kept, RULES, NOW).state is kept


def test_expired_items_bump_updated_at_so_the_lead_is_kept() -> None:
    state = replace(
        waiting_state(make_status_change(keys=MatchKeys(EMAIL_SHA))),
        updated_at=NOW - timedelta(days=400),
    )
    outcome = expire(state, UNLESS_DENIED, NOW)
    assert outcome.state is not None and outcome.state.updated_at == NOW
