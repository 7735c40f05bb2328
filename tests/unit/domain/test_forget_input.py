"""forget_input: a deliberate re-drive makes the core forget it saw the input, and nothing else."""

from __future__ import annotations

from streams.domain.lead import forget_input, on_status_change
from tests.unit.factories import (
    NOW,
    SOURCE,
    make_booking,
    make_form_submit,
    make_rules,
    make_state,
    make_status_change,
)


def test_nothing_to_forget_without_state() -> None:
    assert forget_input(None, make_status_change()) is None


def test_an_input_never_seen_leaves_the_state_as_it_is() -> None:
    state = make_state(seen={"s:other": NOW})
    assert forget_input(state, make_status_change(change_id="c-1")) is state


def test_only_the_redriven_input_is_forgotten() -> None:
    state = make_state(seen={"s:c-1": NOW, "b:bk-1": NOW, "f:evt-1": NOW})

    assert forget_input(state, make_status_change(change_id="c-1")).seen == {  # type: ignore[union-attr]
        "b:bk-1": NOW,
        "f:evt-1": NOW,
    }
    assert forget_input(state, make_booking(booking_id="bk-1")).seen == {  # type: ignore[union-attr]
        "s:c-1": NOW,
        "f:evt-1": NOW,
    }
    assert forget_input(state, make_form_submit(event_id="evt-1")).seen == {  # type: ignore[union-attr]
        "s:c-1": NOW,
        "b:bk-1": NOW,
    }
    assert state.seen == {"s:c-1": NOW, "b:bk-1": NOW, "f:evt-1": NOW}  # a new state, not a change


def test_a_forgotten_status_change_is_processed_again_but_sends_nothing_twice() -> None:
    rules, change = make_rules(), make_status_change()
    first = on_status_change(make_state(sent={}), change, SOURCE, rules, NOW)
    assert len(first.conversions) == 1  # sent once (its event name depends on the route)

    replayed = on_status_change(first.state, change, SOURCE, rules, NOW)
    redriven = on_status_change(forget_input(first.state, change), change, SOURCE, rules, NOW)

    assert list(replayed.conversions) == list(redriven.conversions) == []  # the ledger holds
    assert redriven.state is not None and "s:c-1" in redriven.state.seen  # seen again
