"""The report's pure aggregation against a known history: every figure exact."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from streams.domain.mapping import DEFAULT_STAGE_MAP_CRM
from streams.domain.types import Rules
from streams.ops.report.figures import Bucket, History, Report, Stats, histogram, percentile
from streams.ops.report.model import aggregate, coverage, parse_duration, parse_time

# One map for both routes (as LEADSTREAM_STAGE_MAP sets): a qualified lead is QualifiedLead.
SAME_MAP = DEFAULT_STAGE_MAP_CRM
T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RULES = Rules(stage_map_web=SAME_MAP, stage_map_crm=SAME_MAP, crm_routing=True)
H = timedelta(hours=1)


def form(lead: str, at: datetime, consent: str = "GRANTED", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e-{lead}",
        "lead_id": lead,
        "occurred_at": at,
        "tiktok_lead_id": None,
        "ad_consent": consent,
        **extra,
    }


def change(cid: str, lead: str, status: str, at: datetime) -> dict[str, Any]:
    return {"change_id": cid, "lead_id": lead, "status": status, "changed_at": at, "crm": "hs"}


def booking(bid: str, event_id: str, lead: str | None, at: datetime) -> dict[str, Any]:
    return {"booking_id": bid, "event_id": event_id, "lead_id": lead, "occurred_at": at}


def conversion(
    event_id: str,
    event: str,
    lead: str,
    source: str,
    at: datetime,
    *,
    channel: str = "WEB",
    kind: str = "status_change",
    matched: bool = True,
    keys: str = "",
) -> dict[str, Any]:
    """``keys`` is a string of letters: e(mail) p(hone) x(external id) c(ttclid) t(tp) i(p) u(a)."""
    return {
        "event_id": event_id,
        "event": event,
        "event_time": at,
        "lead_id": lead,
        "source_kind": kind,
        "source_id": source,
        "channel": channel,
        "matched": matched,
        "email_sha256": "a" * 64 if "e" in keys else None,
        "phone_sha256": "b" * 64 if "p" in keys else None,
        "external_id_sha256": "c" * 64 if "x" in keys else None,
        "ttclid": "E.C.P.x" if "c" in keys else None,
        "ttp": "ttp" if "t" in keys else None,
        "ip": "203.0.113.9" if "i" in keys else None,
        "user_agent": "Mozilla/5.0" if "u" in keys else None,
        "created_at": at,
    }


def receipt(
    event_id: str,
    event: str,
    at: datetime,
    *,
    outcome: str = "DELIVERED",
    route: str = "web",
    code: int | None = 0,
    attempts: int = 1,
    test_event: bool = False,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event": event,
        "lead_id": "x",
        "destination": "tiktok",
        "event_source": route,
        "event_source_id": "PIXEL",
        "outcome": outcome,
        "api_code": code,
        "message": None,
        "request_id": None,
        "attempts": attempts,
        "test_event": test_event,
        "decided_at": at,
    }


def dead(reason: str, at: datetime, message: str, topic: str) -> dict[str, Any]:
    return {
        "source_topic": topic,
        "source_partition": 0,
        "source_offset": 1,
        "reason": reason,
        "message": message,
        "dead_lettered_at": at,
    }


QL, PUR = "QualifiedLead", "Purchase"
C1 = conversion("e-L1:QL", QL, "L1", "s1", T - 9 * H, keys="epctiu")


def known_history() -> History:
    """Six leads (four web, two crm) and everything that can happen to them; see the tests."""
    forms = [
        form("L1", T - 9.5 * H),
        form("L1", T - 9.5 * H),  # redelivered form: dedup by input
        form("L2", T - 10 * H),
        form("L3", T - 48 * H, tiktok_lead_id="tt-3"),  # crm route
        form("L4", T - 5 * H, "DENIED"),
        form("L5", T - 5 * H, "UNKNOWN"),
        form("L6", T - 3 * H, tiktok_lead_id="tt-6"),  # crm, never qualified
    ]
    changes = [
        change("s1", "L1", "Qualified", T - 9 * H),
        change("s1", "L1", "Qualified", T - 9 * H),  # redelivered: dedup by input
        change("s2", "L1", "won", T - 2 * H),
        change("s3", "L2", "qualified", T - 7 * H),
        change("s4", "L2", "SQL", T - 6 * H),  # same event again: dedup by ledger
        change("s5", "L3", "qualified", T - 24 * H),
        change("s6", "L4", "qualified", T - 4 * H),  # DENIED: withheld
        change("s7", "L5", "qualified", T - 4 * H),  # UNKNOWN under granted-only: withheld
        change("s8", "L2", "contacted", T - 5 * H),  # not mapped: ignored
        change("s9", "L9", "qualified", T - 1 * H),  # no form: unmatched, sent without form
        change("s10", "L10", "contacted", T - 1 * H),  # no form, not mapped
    ]
    bookings = [
        booking("b1", "be1", "L1", T - 8 * H),
        booking("b2", "be1", "L1", T - 8 * H),  # same browser event: dedup by ledger
        booking("b3", "be3", "L4", T - 4 * H),  # DENIED: withheld
    ]
    conversions = [
        C1,
        C1,  # re-published after a crash: merged by event id
        conversion("e-L1:Purchase", PUR, "L1", "s2", T - 2 * H, keys="epci"),
        conversion("e-L2:QL", QL, "L2", "s3", T - 7 * H, keys="e"),
        conversion("e-L3:QL", QL, "L3", "s5", T - 24 * H, channel="CRM", keys="epx"),
        conversion("lead-L9:QL", QL, "L9", "s9", T - 1 * H, matched=False, keys="p"),
        conversion("be1", "Schedule", "L1", "b1", T - 8 * H, kind="booking", keys="ectiu"),
    ]
    receipts = [
        receipt("e-L1:QL", QL, T - 9 * H + timedelta(seconds=30)),
        receipt("e-L1:Purchase", PUR, T - 2 * H + timedelta(seconds=600), attempts=3),
        receipt("e-L2:QL", QL, T - 7 * H, outcome="DEAD_LETTERED", code=40002),
        receipt(
            "e-L3:QL",
            QL,
            T - 24 * H + timedelta(seconds=120),
            route="crm",
            code=40050,
            test_event=True,
        ),
        receipt("lead-L9:QL", QL, T, outcome="DEAD_LETTERED", code=None, attempts=4),
        receipt("be1", "Schedule", T - 8 * H + timedelta(seconds=10)),
        receipt("e-L0:QL", QL, T - 3 * H),  # its conversion is older than the range
    ]
    dead_letters = [
        dead("missing_field", datetime(2026, 11, 18, 10, tzinfo=UTC), "no  lead_id", "leads.f"),
        dead("missing_field", datetime(2026, 11, 18, 11, tzinfo=UTC), "no lead_id", "leads.f"),
        dead("invalid_value", datetime(2026, 11, 19, 9, tzinfo=UTC), "no value", "crm.s"),
        dead("api_rejected", datetime(2026, 11, 19, 23, 59, tzinfo=UTC), "40002 bad", "ls.c"),
    ]
    return History(forms, bookings, changes, conversions, receipts, dead_letters)


@pytest.fixture
def report() -> Report:
    return aggregate(known_history(), RULES, T - timedelta(days=7), T, {"t": 3})


def test_funnel_per_route(report: Report) -> None:
    web, crm = report.funnel
    assert (web.route, web.forms, web.qualified, web.won) == ("web", 4, 2, 1)
    assert (web.qualified_rate, web.won_rate, web.form_to_won_rate) == (0.5, 0.5, 0.25)
    assert (crm.route, crm.forms, crm.qualified, crm.won) == ("crm", 2, 1, 0)
    assert (crm.qualified_rate, crm.won_rate, crm.form_to_won_rate) == (0.5, 0.0, 0.0)


def test_crm_route_needs_crm_routing() -> None:
    plain = aggregate(known_history(), Rules(stage_map_web=SAME_MAP, stage_map_crm=SAME_MAP), T, T)
    assert [(f.route, f.forms, f.qualified) for f in plain.funnel] == [("web", 6, 3), ("crm", 0, 0)]


def test_unmatched_status_changes(report: Report) -> None:
    assert report.unmatched_status_changes == 2
    assert report.unmatched_by_event == {"(not mapped)": 1, "QualifiedLead": 1}


def test_event_rows(report: Report) -> None:
    rows = {(e.route, e.event): e for e in report.events}
    assert list(rows) == [
        ("crm", QL),
        ("web", PUR),
        ("web", QL),
        ("web", "Schedule"),
    ]
    crm = rows[("crm", QL)]
    assert (crm.conversions, crm.sent_without_form, crm.accepted, crm.rejected, crm.retried) == (
        1,
        0,
        1,
        0,
        0,
    )
    assert crm.status_to_accepted == Stats(1, 120.0, 120.0, 120.0)
    assert crm.coverage.weakest == ("ip_user_agent", "ttclid", "ttp")
    web_ql = rows[("web", QL)]
    assert (
        web_ql.conversions,
        web_ql.sent_without_form,
        web_ql.accepted,
        web_ql.rejected,
        web_ql.retried,
    ) == (3, 1, 2, 2, 1)
    assert web_ql.status_to_accepted == Stats(1, 30.0, 30.0, 30.0)
    assert web_ql.coverage.events == 1
    assert web_ql.coverage.weakest == ("external_id",)
    purchase = rows[("web", PUR)]
    assert (purchase.accepted, purchase.retried) == (1, 1)
    assert purchase.status_to_accepted == Stats(1, 600.0, 600.0, 600.0)
    schedule = rows[("web", "Schedule")]
    assert schedule.status_to_accepted == Stats(0, None, None, None)  # a booking, not a change
    assert schedule.coverage.weakest == ("external_id", "phone")


def test_status_change_to_accepted_overall(report: Report) -> None:
    assert report.status_to_accepted == Stats(3, 120.0, 600.0, 600.0)


def test_form_to_qualified(report: Report) -> None:
    web, crm = report.form_to_qualified
    assert web.stats == Stats(2, 1800.0, 10800.0, 10800.0)
    assert [b.count for b in web.histogram] == [1, 1, 0, 0, 0, 0, 0]
    assert crm.stats == Stats(1, 86400.0, 86400.0, 86400.0)
    assert [b.count for b in crm.histogram] == [0, 0, 0, 1, 0, 0, 0]


def test_match_key_coverage(report: Report) -> None:
    c = report.coverage
    assert c.events == 4
    assert c.counts == {
        "email": 4,
        "phone": 3,
        "external_id": 1,
        "ttclid": 3,
        "ttp": 2,
        "ip_user_agent": 2,
    }
    assert c.shares["phone"] == 0.75
    assert c.weakest == ("external_id",)


def test_delivery(report: Report) -> None:
    d = report.delivery
    assert (d.accepted, d.rejected, d.retried) == (5, 2, 2)
    assert d.rejected_by_code == {"40002": 1, "no_answer": 1}
    assert (d.duplicate_request, d.test_events, d.receipts_without_conversion) == (1, 1, 1)
    assert d.dedup_by_input == {"form": 1, "booking": 0, "status_change": 1}
    assert d.dedup_by_ledger == 2
    assert d.resends_merged == 1
    assert d.withheld_by_consent == {"consent_denied": 2, "consent_unknown": 1}
    assert d.ignored_statuses == 2


def test_unknown_consent_is_sent_under_unless_denied() -> None:
    from streams.domain.types import ConsentPolicy

    rules = Rules(
        stage_map_web=SAME_MAP, stage_map_crm=SAME_MAP, consent_policy=ConsentPolicy.UNLESS_DENIED
    )
    d = aggregate(known_history(), rules, T, T).delivery
    assert d.withheld_by_consent == {"consent_denied": 2}


def test_a_ledger_duplicate_needs_an_earlier_conversion() -> None:
    h = known_history()
    # The second qualifying change of L2 happened before the one that produced the conversion:
    # it was not suppressed by the ledger (it may have been withheld or dead-lettered itself).
    changes = [
        c if c["change_id"] != "s4" else {**c, "changed_at": T - 8 * H} for c in h.status_changes
    ]
    d = aggregate(
        History(h.forms, h.bookings, changes, h.conversions, h.receipts, h.dead_letters),
        RULES,
        T,
        T,
    )
    assert d.delivery.dedup_by_ledger == 1


def test_dead_letters(report: Report) -> None:
    dl = report.dead_letters
    assert dl.total == 4
    assert dl.by_reason == {"missing_field": 2, "api_rejected": 1, "invalid_value": 1}
    assert list(dl.by_reason) == ["missing_field", "api_rejected", "invalid_value"]
    assert dl.by_source_topic == {"leads.f": 2, "crm.s": 1, "ls.c": 1}
    assert [(d.day, d.by_reason) for d in dl.by_day] == [
        (date(2026, 11, 18), {"missing_field": 2}),
        (date(2026, 11, 19), {"api_rejected": 1, "invalid_value": 1}),
    ]
    assert [(m.reason, m.message, m.count) for m in dl.top_messages] == [
        ("missing_field", "no lead_id", 2),
        ("api_rejected", "40002 bad", 1),
        ("invalid_value", "no value", 1),
    ]


def test_header(report: Report) -> None:
    assert report.since == T - timedelta(days=7)
    assert report.until == T
    assert report.records_read == {"t": 3}


def test_empty_history_has_no_figures() -> None:
    r = aggregate(History(), RULES, T, T)
    assert [(f.forms, f.qualified_rate) for f in r.funnel] == [(0, None), (0, None)]
    assert r.events == ()
    assert r.status_to_accepted == Stats(0, None, None, None)
    assert r.coverage.events == 0
    assert r.coverage.weakest == ()
    assert r.dead_letters.total == 0


# --- building blocks ------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


def test_histogram_bucket_edges_belong_to_the_next_bucket() -> None:
    bars = histogram([-5.0, 0.0, 3599.0, 3600.0, 86400.0, 40 * 86400.0])
    assert [b.count for b in bars] == [3, 1, 0, 1, 0, 0, 1]
    assert bars[0] == Bucket("<1h", 3600.0, 3)
    assert bars[-1].upper_seconds is None


def test_weakest_falls_back_to_the_lowest_key_when_none_is_under_half() -> None:
    full = conversion("a", QL, "L", "s", T, keys="epxctiu")
    most = conversion("b", QL, "L", "s", T, keys="epxctu")  # no ip: ip_user_agent 50 %
    assert coverage([full, full, full, most]).weakest == ("ip_user_agent",)
    assert coverage([full]).weakest == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("2w", timedelta(weeks=2)),
        ("PT24H", timedelta(hours=24)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P7D", timedelta(days=7)),
        ("PT", None),
        ("P", None),
        ("7 days", None),
        ("2026-11-20", None),
    ],
)
def test_parse_duration(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


def test_parse_time() -> None:
    assert parse_time("7d", T) == T - timedelta(days=7)
    assert parse_time("2026-11-13T12:00:00Z", T) == T - timedelta(days=7)
    assert parse_time("2026-11-13T13:00:00+01:00", T) == T - timedelta(days=7)
    assert parse_time("2026-11-13", T) == datetime(2026, 11, 13, tzinfo=UTC)  # naive is UTC
    with pytest.raises(ValueError, match="neither an ISO 8601 time"):
        parse_time("last week", T)


def test_percentile_rounds_the_rank_up() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0


def test_an_event_dead_lettered_then_accepted_counts_as_accepted_only() -> None:
    h = known_history()
    redriven = receipt("e-L2:QL", QL, T)  # the dead-lettered L2 event, re-driven and accepted
    r = aggregate(
        History(h.forms, h.bookings, h.status_changes, h.conversions, [*h.receipts, redriven], ()),
        RULES,
        T,
        T,
    )
    assert (r.delivery.accepted, r.delivery.rejected) == (6, 1)
    assert r.delivery.rejected_by_code == {"no_answer": 1}


def test_a_later_granting_form_does_not_undo_a_denial() -> None:
    h = known_history()
    forms = [*h.forms, form("L4", T - 4.5 * H, "GRANTED")]
    r = aggregate(History(forms, h.bookings, h.status_changes, h.conversions), RULES, T, T)
    assert r.delivery.withheld_by_consent == {"consent_denied": 2, "consent_unknown": 1}


def test_aggregation_and_rendering_need_no_kafka_and_read_no_clock() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.unit.domain.test_purity import FORBIDDEN_MODULES, FORBIDDEN_SOURCE

    probe = (
        "import json, sys, streams.ops.report.model, streams.ops.report.render;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    leaked = set(json.loads(result.stdout)).intersection(FORBIDDEN_MODULES)
    assert not leaked, f"the report's pure part pulls in {sorted(leaked)}"
    folder = Path(__file__).resolve().parents[3] / "streams" / "ops" / "report"
    for name in ("model.py", "render.py"):
        text = (folder / name).read_text(encoding="utf-8")
        assert not FORBIDDEN_SOURCE.search(text), f"{name} reads the clock or the environment"


def test_meta_receipts_and_meta_only_conversions_change_no_figure() -> None:
    """The figures are TikTok's: Meta's copy of the same lead history adds nothing."""
    plain = known_history()
    meta_receipts = [{**r, "destination": "meta"} for r in plain.receipts]
    meta_only = [
        {**conversion("e-L1:Lead", "Lead", "L1", "e-L1", T - 9.4 * H), "destination": "meta"},
        {**conversion("e-L1:QL", QL, "L1", "s2", T - 2 * H), "destination": "meta"},
    ]
    with_meta = History(
        plain.forms,
        plain.bookings,
        plain.status_changes,
        [*plain.conversions, *meta_only],
        [*plain.receipts, *meta_receipts],
        plain.dead_letters,
    )
    since = T - timedelta(days=7)
    assert aggregate(with_meta, RULES, since, T, {"t": 3}) == aggregate(
        plain, RULES, since, T, {"t": 3}
    )
