"""Render a :class:`~streams.ops.report.model.Report` as terminal text, JSON, or one HTML page.

The HTML page is self-contained: inline CSS and inline SVG charts, no script, no font, no
image or style sheet fetched from anywhere, so it opens offline and can be mailed as a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from streams.ops.report.figures import MATCH_KEYS, Report, Stats


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(report: Report) -> dict[str, Any]:
    """Return the report as JSON-ready data; keys are the dataclass field names (stable)."""
    data: dict[str, Any] = _plain(dataclasses.asdict(report))
    return data


def duration(seconds: float | None) -> str:
    """Format seconds for people: ``45s``, ``12.5m``, ``3.2h``, ``2.1d``; ``-`` for None."""
    if seconds is None:
        return "-"
    sign, s = ("-", -seconds) if seconds < 0 else ("", seconds)
    if s < 60:
        text = f"{s:.0f}s" if s == int(s) else f"{s:.1f}s"
    elif s < 3600:
        text = f"{s / 60:.1f}m"
    elif s < 86400:
        text = f"{s / 3600:.1f}h"
    else:
        text = f"{s / 86400:.1f}d"
    return sign + text


def percent(share: float | None) -> str:
    """Format a share as ``62.5%``; ``-`` for None."""
    return "-" if share is None else f"{share * 100:.1f}%"


def stamp(dt: datetime) -> str:
    """Format a UTC timestamp to the second."""
    return dt.strftime("%Y-%m-%d %H:%M:%SZ")


def stats_text(s: Stats) -> str:
    """Format p50 / p95 / max of a duration summary."""
    return f"{duration(s.p50)} / {duration(s.p95)} / {duration(s.max)}"


def counts_text(mapping: Mapping[str, int]) -> str:
    """Format counts as ``name count, ...`` (``none`` when empty)."""
    return ", ".join(f"{k} {v}" for k, v in mapping.items()) or "none"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> list[str]:
    """Align a table: the first ``text_columns`` columns to the left, numbers to the right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def render_text(report: Report) -> str:
    """Return the terminal summary: aligned tables, one section per question."""
    r, d, dl = report, report.delivery, report.dead_letters
    out = [f"Lead-quality report {stamp(r.since)} .. {stamp(r.until)}"]
    out.append("Records read: " + counts_text(r.records_read))
    out += ["", "Funnel (leads with a form in range)"]
    out += _table(
        ("route", "forms", "qualified", "rate", "won", "rate", "form->won"),
        [
            (
                f.route,
                str(f.forms),
                str(f.qualified),
                percent(f.qualified_rate),
                str(f.won),
                percent(f.won_rate),
                percent(f.form_to_won_rate),
            )
            for f in r.funnel
        ],
    )
    out.append(
        f"  status changes without a form in range: {r.unmatched_status_changes}"
        + (f" ({counts_text(r.unmatched_by_event)})" if r.unmatched_by_event else "")
    )
    out += ["", "Events"]
    if r.events:
        out += _table(
            (
                "event",
                "route",
                "conversions",
                "no form",
                "accepted",
                "rejected",
                "retried",
                "change->accepted p50 / p95 / max",
            ),
            [
                (
                    e.event,
                    e.route,
                    str(e.conversions),
                    str(e.sent_without_form),
                    str(e.accepted),
                    str(e.rejected),
                    str(e.retried),
                    stats_text(e.status_to_accepted),
                )
                for e in r.events
            ],
            text_columns=2,
        )
    else:
        out.append("  no conversions or receipts in range")
    s = r.status_to_accepted
    out.append(f"  status change -> accepted, all events: {stats_text(s)} (n={s.count})")
    out += ["", "Form -> qualified (p50 / p95 / max, then histogram)"]
    for dist in r.form_to_qualified:
        bars = "  ".join(f"{b.label} {b.count}" for b in dist.histogram)
        out.append(f"  {dist.route:<4} {stats_text(dist.stats)} (n={dist.stats.count})   {bars}")
    c = r.coverage
    out += ["", f"Match-key coverage (accepted events: {c.events})"]
    out.append("  " + "  ".join(f"{k} {percent(c.shares[k])}" for k in MATCH_KEYS))
    weakest = ", ".join(f"{k} ({percent(c.shares[k])})" for k in c.weakest) or "none"
    out.append(f"  weakest: {weakest}")
    by_input = sum(d.dedup_by_input.values())
    out += ["", "Delivery"]
    out.append(
        f"  accepted {d.accepted}, rejected {d.rejected} ({counts_text(d.rejected_by_code)}), "
        f"retried {d.retried}, duplicate request (40050) {d.duplicate_request}, "
        f"test events {d.test_events}"
    )
    out.append(
        f"  deduplicated: by input {by_input} ({counts_text(d.dedup_by_input)}), "
        f"by ledger {d.dedup_by_ledger}, re-sends merged {d.resends_merged}"
    )
    out.append(f"  withheld by consent (derived): {counts_text(d.withheld_by_consent)}")
    out.append(f"  ignored statuses (not in the stage map): {d.ignored_statuses}")
    if d.receipts_without_conversion:
        out.append(
            f"  receipts whose conversion is before the range: {d.receipts_without_conversion}"
        )
    out += ["", f"Dead letters: {dl.total}"]
    if dl.total:
        out.append("  by reason: " + counts_text(dl.by_reason))
        out.append("  by source topic: " + counts_text(dl.by_source_topic))
        for day in dl.by_day:
            out.append(f"  {day.day.isoformat()}  {counts_text(day.by_reason)}")
        out.append("  top messages:")
        for m in dl.top_messages:
            out.append(f"  {m.count:>6}  {m.reason:<18} {m.message[:100]}")
    out += ["", "Not in the topics (see the worker's metrics):"]
    out += [f"  - {n}" for n in r.notes]
    return "\n".join(out) + "\n"


# --- HTML -----------------------------------------------------------------------------------
