"""When a lead next needs attention (next_due) and the per-partition DueIndex."""

from __future__ import annotations

from datetime import timedelta

from streams.domain.due import MIN_RESCHEDULE, DueIndex, next_due
from streams.domain.types import LeadState
from tests.unit.factories import (
    CLICK_AT,
    LEAD_ID,
    NOW,
    make_booking,
    make_context,
    make_pending,
    make_rules,
    make_state,
    make_status_change,
)

RULES = make_rules(
    pending_wait=timedelta(hours=24),
    ledger_retention=timedelta(days=90),
    input_dedup_window=timedelta(days=30),
    lead_retention=timedelta(days=60),
)
T0 = NOW
T1 = NOW + timedelta(minutes=1)
T2 = NOW + timedelta(minutes=2)
T3 = NOW + timedelta(minutes=3)


# --- next_due ---------------------------------------------------------------------------------


def test_empty_state_is_never_due() -> None:
    assert next_due(LeadState(lead_id=LEAD_ID), RULES, NOW) is None


def test_pending_is_due_after_the_wait() -> None:
    state = LeadState(
        lead_id=LEAD_ID,
        pending=(
            make_pending(make_status_change(), NOW - timedelta(hours=2)),
            make_pending(make_booking(), NOW - timedelta(hours=5)),
        ),
    )
    assert next_due(state, RULES, NOW) == NOW + timedelta(hours=19)


def test_sent_entry_is_due_after_the_ledger_retention() -> None:
    state = LeadState(lead_id=LEAD_ID, sent={"e:QualifiedLead": NOW - timedelta(days=10)})
    assert next_due(state, RULES, NOW) == NOW + timedelta(days=80)


def test_seen_entry_is_due_after_the_dedup_window() -> None:
    state = LeadState(lead_id=LEAD_ID, seen={"s:c-1": NOW - timedelta(days=1)})
    assert next_due(state, RULES, NOW) == NOW + timedelta(days=29)


def test_context_is_due_after_the_lead_retention_from_the_form() -> None:
    state = LeadState(lead_id=LEAD_ID, context=make_context())
    assert next_due(state, RULES, NOW) == CLICK_AT + timedelta(days=60)


def test_context_retention_counts_from_the_last_update() -> None:
    updated = NOW - timedelta(days=3)
    state = LeadState(lead_id=LEAD_ID, context=make_context(), updated_at=updated)
    assert next_due(state, RULES, NOW) == updated + timedelta(days=60)


def test_earliest_of_everything_wins() -> None:
    state = make_state(
        pending=(make_pending(make_status_change(), NOW - timedelta(hours=1)),),
    )
    assert next_due(state, RULES, NOW) == NOW + timedelta(hours=23)


def test_typical_state_without_pending_is_due_at_its_oldest_seen_id() -> None:
    # seen: the form at CLICK_AT (+30 d) is earlier than the ledger (+90 d) and context (+60 d).
    assert next_due(make_state(), RULES, NOW) == CLICK_AT + timedelta(days=30)


def test_already_due_is_floored_to_the_minimum_reschedule() -> None:
    state = LeadState(
        lead_id=LEAD_ID, pending=(make_pending(make_status_change(), NOW - timedelta(hours=30)),)
    )
    assert next_due(state, RULES, NOW) == NOW + MIN_RESCHEDULE
    assert MIN_RESCHEDULE == timedelta(seconds=30)


def test_due_exactly_now_is_floored() -> None:
    state = LeadState(
        lead_id=LEAD_ID, pending=(make_pending(make_status_change(), NOW - timedelta(hours=24)),)
    )
    assert next_due(state, RULES, NOW) == NOW + MIN_RESCHEDULE


def test_due_just_ahead_is_not_floored() -> None:
    received = NOW - timedelta(hours=24) + timedelta(seconds=5)
    state = LeadState(lead_id=LEAD_ID, pending=(make_pending(make_status_change(), received),))
    assert next_due(state, RULES, NOW) == NOW + timedelta(seconds=5)


# --- DueIndex ---------------------------------------------------------------------------------


def test_pop_due_yields_in_time_order_up_to_now() -> None:
    index = DueIndex()
    index.schedule(0, "c", T3)
    index.schedule(0, "a", T1)
    index.schedule(0, "b", T2)

    assert list(index.pop_due(0, T2)) == ["a", "b"]
    assert len(index) == 1
    assert list(index.pop_due(0, T2)) == []
    assert list(index.pop_due(0, T3)) == ["c"]
    assert len(index) == 0


def test_ties_pop_in_lead_id_order() -> None:
    index = DueIndex()
    for lead in ("m", "z", "a"):
        index.schedule(1, lead, T1)
    assert list(index.pop_due(1, T1)) == ["a", "m", "z"]


def test_nothing_due_before_its_time() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    assert list(index.pop_due(0, T0)) == []
    assert len(index) == 1


def test_reschedule_later_ignores_the_stale_entry() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(0, "a", T3)

    assert len(index) == 1
    assert list(index.pop_due(0, T2)) == []
    assert list(index.pop_due(0, T3)) == ["a"]
    assert len(index) == 0


def test_reschedule_earlier_pops_once() -> None:
    index = DueIndex()
    index.schedule(0, "a", T3)
    index.schedule(0, "a", T1)

    assert list(index.pop_due(0, T1)) == ["a"]
    assert list(index.pop_due(0, T3)) == []


def test_reschedule_back_and_forth_pops_once() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(0, "a", T2)
    index.schedule(0, "a", T1)
    index.schedule(0, "a", T1)  # same time again: no second entry

    assert list(index.pop_due(0, T3)) == ["a"]
    assert len(index) == 0


def test_schedule_none_unschedules() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(0, "a", None)
    index.schedule(0, "never-scheduled", None)

    assert len(index) == 0
    assert list(index.pop_due(0, T3)) == []


def test_discard_is_lazy_but_effective() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(0, "b", T1)
    index.discard(0, "a")
    index.discard(0, "unknown")
    index.discard(9, "a")  # unknown partition

    assert len(index) == 1
    assert list(index.pop_due(0, T1)) == ["b"]


def test_discarded_then_rescheduled_at_same_time_pops_once() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.discard(0, "a")
    index.schedule(0, "a", T1)
    assert list(index.pop_due(0, T1)) == ["a"]


def test_popped_lead_can_be_scheduled_again() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    assert list(index.pop_due(0, T1)) == ["a"]
    index.schedule(0, "a", T1)
    assert len(index) == 1
    assert list(index.pop_due(0, T1)) == ["a"]


def test_partitions_are_independent_and_len_counts_all() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(1, "a", T1)
    index.schedule(1, "b", T2)

    assert len(index) == 3
    assert list(index.pop_due(1, T3)) == ["a", "b"]
    assert len(index) == 1
    assert list(index.pop_due(0, T3)) == ["a"]


def test_drop_partition_forgets_it() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(3, "b", T1)
    index.schedule(3, "c", T2)

    index.drop_partition(3)
    index.drop_partition(42)  # never seen: no error

    assert len(index) == 1
    assert list(index.pop_due(3, T3)) == []
    index.schedule(3, "b", T2)  # assigned back later
    assert list(index.pop_due(3, T3)) == ["b"]


def test_pop_due_on_an_unknown_partition_is_empty() -> None:
    assert list(DueIndex().pop_due(5, T3)) == []


def test_pop_due_is_lazy_per_item() -> None:
    index = DueIndex()
    index.schedule(0, "a", T1)
    index.schedule(0, "b", T2)
    due = index.pop_due(0, T3)
    assert next(due) == "a"
    assert len(index) == 1  # "b" is still scheduled until the generator reaches it
    assert list(due) == ["b"]
    assert len(index) == 0
