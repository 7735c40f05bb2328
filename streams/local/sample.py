"""Sample traffic for the demo: a few leads that exercise every rule, as JSON-ready records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

JANE = "jane.doe@example.com"
TTCLID = "E.C.P.v3demoClickIdForLead1"


@dataclass
class Traffic:
    """Records per input kind, in the order they are produced, and what the demo expects."""

    forms: list[dict[str, Any]] = field(default_factory=list)
    statuses_early: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    bookings: list[dict[str, Any]] = field(default_factory=list)
    expected_sent: dict[str, int] = field(default_factory=dict)
    expected_dead: dict[str, int] = field(default_factory=dict)


def sample_traffic(now: datetime) -> Traffic:
    """Build the demo's traffic around ``now`` (the sandbox rejects events older than 7 days)."""
    t0 = now - timedelta(hours=2)

    def form(n: int, consent: str = "GRANTED", **extra: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event_id": f"evt-form-{n}",
            "lead_id": f"lead-{n}",
            "occurred_at": t0 + timedelta(minutes=n),
            "page_url": f"https://shop.example.com/quote?utm_source=tiktok&lead={n}",
            "ttclid": f"E.C.P.v3demoClickIdForLead{n}",
            "ttp": f"ttp-cookie-{n}",
            "email": f"lead{n}@example.com",
            "phone": f"07700 900{n:03d}",
            "country": "GB",
            "ip": f"203.0.113.{n}",
            "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)",
            "ad_consent": consent,
        }
        record.update(extra)
        return record

    def status(change: str, lead: int, stage: str, minutes: int, **extra: Any) -> dict[str, Any]:
        record = {
            "change_id": change,
            "lead_id": f"lead-{lead}",
            "status": stage,
            "changed_at": now - timedelta(minutes=minutes),
            "crm": "hubspot",
        }
        record.update(extra)
        return record

    traffic = Traffic()
    traffic.forms = [
        form(1, email=JANE, ttclid=TTCLID),  # the full story: qualified (flapping), won, booking
        form(2, consent="UNKNOWN"),  # withheld under the default granted-only policy
        form(3, consent="DENIED"),  # never sent
        form(4),  # its status change arrives before the form
        form(5),  # won without a value: dead-lettered
        form(6, tiktok_lead_id="7301234567890123456"),  # Instant Form lead: crm route
        # A Meta Instant Form lead that jumps straight to won: on TikTok a web Purchase; on Meta
        # (demo --meta) the Conversion Leads stages Lead, QualifiedLead, Purchase, in order.
        form(7, meta_lead_id="525645896321507", ttclid=None, ttp=None),
    ]
    traffic.statuses_early = [status("chg-4-1", 4, "SQL", 50)]
    traffic.statuses = [
        status("chg-1-1", 1, "Qualified", 60),
        status("chg-1-1", 1, "Qualified", 60),  # redelivered
        status("chg-1-2", 1, "contacted", 55),
        status("chg-1-3", 1, "qualified", 45),  # flapped back: nothing new to send
        status("chg-1-4", 1, "closed_won", 30, value=1200.0, currency="EUR"),
        status("chg-2-1", 2, "qualified", 40),
        status("chg-3-1", 3, "qualified", 40),
        status("chg-5-1", 5, "won", 20),
        status("chg-6-1", 6, "qualified", 10),
        status("chg-7-1", 7, "won", 8, value=450.0, currency="GBP"),
        status("chg-9-1", 1, "qualified", 5, changed_at=datetime.fromtimestamp(1, tz=now.tzinfo)),
    ]
    traffic.bookings = [
        {
            "booking_id": "bk-1",
            "event_id": "evt-booking-1",
            "occurred_at": t0 + timedelta(minutes=30),
            "lead_id": "lead-1",
            "page_url": "https://shop.example.com/book",
        },
        {  # no lead_id: matched to lead-4 by its hashed email
            "booking_id": "bk-2",
            "event_id": "evt-booking-2",
            "occurred_at": t0 + timedelta(minutes=35),
            "email": "LEAD4@example.com ",
            "page_url": "https://shop.example.com/book",
        },
    ]
    # Qualified leads 1 and 4 go on the web route (ApplicationApproval), lead 6 on the CRM route.
    traffic.expected_sent = {
        "ApplicationApproval": 2,
        "QualifiedLead": 1,
        "Purchase": 2,
        "Schedule": 2,
    }
    traffic.expected_dead = {"invalid_value": 1, "invalid_timestamp": 1, "undecodable": 1}
    return traffic
