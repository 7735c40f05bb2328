"""The report as one self-contained HTML page: inline CSS and inline SVG charts, no script.

Nothing is fetched from anywhere (no font, image or style sheet), so the page opens offline and
can be mailed as a file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from streams.ops.report.figures import MATCH_KEYS, Report
from streams.ops.report.render import counts_text, duration, percent, stamp, stats_text

CHARTS = (
    "funnel",
    "status_to_accepted",
    "form_to_qualified_web",
    "form_to_qualified_crm",
    "coverage",
    "delivery",
    "dead_letters_per_day",
)
_PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")

_W = 640


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg(chart_id: str, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg id="chart-{chart_id}" class="chart" role="img" aria-label="{_e(title)}" '
        f'width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}"><title>{_e(title)}</title>' + "".join(body) + "</svg>"
    )


def _empty(chart_id: str, title: str) -> str:
    return _svg(
        chart_id,
        60,
        ['<text x="10" y="35" class="muted">no data in range</text>'],
        title,
    )


def hbar_chart(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, float, str]],
    scale: float | None = None,
    period: int = 0,
) -> str:
    """Horizontal bars: (label, value, value text) per row; ``scale`` is the full-width value.

    With ``period``, colours repeat every ``period`` rows (the same stage of each route).
    """
    top = max((v for _, v, _ in rows), default=0.0)
    full = scale if scale is not None else top
    if not rows or full <= 0:
        return _empty(chart_id, title)
    label_w, bar_w, row_h = 170, _W - 170 - 90, 24
    body = []
    for i, (label, value, text) in enumerate(rows):
        y = 8 + i * row_h
        w = max(0.0, bar_w * value / full)
        color = _PALETTE[(i % period if period else i) % len(_PALETTE)]
        body.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{_e(label)}: {_e(text)}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{_e(text)}</text>'
        )
    return _svg(chart_id, 16 + len(rows) * row_h, body, title)


def vbar_chart(
    chart_id: str, title: str, bars: Sequence[tuple[str, Mapping[str, int]]], series: Sequence[str]
) -> str:
    """Vertical stacked bars: (label, counts by series) per bar, with a legend of ``series``."""
    totals = [sum(counts.values()) for _, counts in bars]
    top = max(totals, default=0)
    if not bars or top <= 0:
        return _empty(chart_id, title)
    left, plot_h, base = 40, 180, 200
    step = (_W - left - 10) / len(bars)
    width = min(60.0, step * 0.7)
    body = [
        f'<line x1="{left}" y1="{base}" x2="{_W - 10}" y2="{base}" class="axis"/>',
        f'<text x="{left - 6}" y="{base - plot_h + 4}" text-anchor="end">{top}</text>',
        f'<text x="{left - 6}" y="{base}" text-anchor="end">0</text>',
    ]
    color = {s: _PALETTE[i % len(_PALETTE)] for i, s in enumerate(series)}
    for i, (label, counts) in enumerate(bars):
        x = left + i * step + (step - width) / 2
        y = float(base)
        for s in series:
            n = counts.get(s, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{color[s]}"><title>{_e(label)} {_e(s)}: {n}</title></rect>'
            )
        total = sum(counts.values())
        body.append(
            f'<text x="{x + width / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">{total}</text>'
            f'<text x="{x + width / 2:.1f}" y="{base + 16}" text-anchor="middle">{_e(label)}</text>'
        )
    legend_y = base + 40
    for i, s in enumerate(series):
        x = left + (i % 4) * 150
        y = legend_y + (i // 4) * 18
        body.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{color[s]}"/>'
            f'<text x="{x + 16}" y="{y}">{_e(s)}</text>'
        )
    return _svg(chart_id, legend_y + 18 * math.ceil(len(series) / 4) + 4, body, title)


def charts(report: Report) -> dict[str, str]:
    """Return every chart of the page as inline SVG, keyed as in :data:`CHARTS`."""
    r, d = report, report.delivery
    out: dict[str, str] = {}
    funnel_rows = []
    for f in r.funnel:
        funnel_rows += [
            (f"{f.route} forms", float(f.forms), str(f.forms)),
            (
                f"{f.route} qualified",
                float(f.qualified),
                f"{f.qualified} ({percent(f.qualified_rate)})",
            ),
            (f"{f.route} won", float(f.won), f"{f.won} ({percent(f.won_rate)})"),
        ]
    out["funnel"] = hbar_chart(
        "funnel", "Funnel: forms, qualified, won per route", funnel_rows, period=3
    )
    latency_rows = []
    for e in r.events:
        if e.status_to_accepted.count:
            for name, value in (
                ("p50", e.status_to_accepted.p50),
                ("p95", e.status_to_accepted.p95),
                ("max", e.status_to_accepted.max),
            ):
                latency_rows.append(
                    (f"{e.event} {e.route} {name}", float(value or 0), duration(value))
                )
    out["status_to_accepted"] = hbar_chart(
        "status_to_accepted", "CRM status change to accepted by the Events API", latency_rows
    )
    for dist in r.form_to_qualified:
        out[f"form_to_qualified_{dist.route}"] = vbar_chart(
            f"form_to_qualified_{dist.route}",
            f"Form to qualification, {dist.route} route (leads per time bucket)",
            [(b.label, {"leads": b.count}) for b in dist.histogram],
            ["leads"],
        )
    c = r.coverage
    out["coverage"] = hbar_chart(
        "coverage",
        f"Match-key coverage of {c.events} accepted events",
        [
            (
                k + (" (weak)" if k in c.weakest else ""),
                float(c.shares[k] or 0),
                percent(c.shares[k]),
            )
            for k in MATCH_KEYS
        ]
        if c.events
        else [],
        scale=1.0,
    )
    delivery_rows = [("accepted", float(d.accepted), str(d.accepted))]
    delivery_rows += [
        (f"rejected {code}", float(n), str(n)) for code, n in d.rejected_by_code.items()
    ]
    delivery_rows += [
        ("retried", float(d.retried), str(d.retried)),
        (
            "dedup by input",
            float(sum(d.dedup_by_input.values())),
            str(sum(d.dedup_by_input.values())),
        ),
        ("dedup by ledger", float(d.dedup_by_ledger), str(d.dedup_by_ledger)),
        ("re-sends merged", float(d.resends_merged), str(d.resends_merged)),
    ]
    delivery_rows += [(f"withheld {k}", float(n), str(n)) for k, n in d.withheld_by_consent.items()]
    out["delivery"] = hbar_chart("delivery", "Delivery outcomes and deduplication", delivery_rows)
    reasons = list(r.dead_letters.by_reason)
    out["dead_letters_per_day"] = vbar_chart(
        "dead_letters_per_day",
        "Dead letters per day (UTC) by reason",
        [(day.day.strftime("%m-%d"), day.by_reason) for day in r.dead_letters.by_day],
        reasons,
    )
    return out


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:980px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #f3f4f6}.text{text-align:left}
th{background:#f9fafb}.chart text{font-size:12px;fill:#374151}.chart .muted{fill:#9ca3af}
.chart .axis{stroke:#9ca3af}figure{margin:1rem 0}figcaption{font-size:.85rem;color:#6b7280}
.weak{color:#dc2626;font-weight:600}.notes{font-size:.9rem;color:#4b5563}
"""


def _html_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], text_columns: int = 1
) -> str:
    def cell(tag: str, i: int, value: object) -> str:
        align = ' class="text"' if i < text_columns else ""
        return f"<{tag}{align}>{_e(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def render_html(report: Report) -> str:
    """Return one self-contained HTML page with every chart inline."""
    r, d, dl, c = report, report.delivery, report.dead_letters, report.coverage
    svg = charts(report)
    title = f"Leadstream lead-quality report {stamp(r.since)} .. {stamp(r.until)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Records read: {_e(counts_text(r.records_read))}</p>",
        "<h2>Funnel</h2>",
        _html_table(
            ("route", "forms", "qualified", "rate", "won", "rate", "form → won"),
            [
                (
                    f.route,
                    f.forms,
                    f.qualified,
                    percent(f.qualified_rate),
                    f.won,
                    percent(f.won_rate),
                    percent(f.form_to_won_rate),
                )
                for f in r.funnel
            ],
        ),
        f"<p>Status changes without a form in range: {r.unmatched_status_changes}"
        + (f" ({_e(counts_text(r.unmatched_by_event))})" if r.unmatched_by_event else "")
        + "</p>",
        _figure(
            svg["funnel"], "Leads with a form in range, and how many of them qualified and won."
        ),
        "<h2>Events and time to the Events API</h2>",
        _html_table(
            (
                "event",
                "route",
                "conversions",
                "sent without form",
                "accepted",
                "rejected",
                "retried",
                "change → accepted p50",
                "p95",
                "max",
            ),
            [
                (
                    e.event,
                    e.route,
                    e.conversions,
                    e.sent_without_form,
                    e.accepted,
                    e.rejected,
                    e.retried,
                    duration(e.status_to_accepted.p50),
                    duration(e.status_to_accepted.p95),
                    duration(e.status_to_accepted.max),
                )
                for e in r.events
            ],
            text_columns=2,
        ),
        _figure(
            svg["status_to_accepted"],
            f"CRM change_at to the accepting receipt's decided_at; all events: "
            f"{stats_text(r.status_to_accepted)} (n={r.status_to_accepted.count}).",
        ),
        "<h2>Form to qualification</h2>",
    ]
    for dist in r.form_to_qualified:
        parts.append(
            _figure(
                svg[f"form_to_qualified_{dist.route}"],
                f"{dist.route}: p50 / p95 / max {stats_text(dist.stats)} (n={dist.stats.count}).",
            )
        )
    weak = ", ".join(f"{k} ({percent(c.shares[k])})" for k in c.weakest) or "none"
    parts += [
        "<h2>Match-key coverage</h2>",
        f'<p>Weakest keys: <span class="weak">{_e(weak)}</span></p>',
        _figure(
            svg["coverage"], "Share of accepted events carrying each key (ip_user_agent: both)."
        ),
        _html_table(
            ("event", "route", "accepted", *MATCH_KEYS),
            [
                (
                    e.event,
                    e.route,
                    e.coverage.events,
                    *(percent(e.coverage.shares[k]) for k in MATCH_KEYS),
                )
                for e in r.events
            ],
            text_columns=2,
        ),
        "<h2>Delivery</h2>",
        _html_table(
            ("figure", "count"),
            [
                ("accepted", d.accepted),
                ("rejected", d.rejected),
                *((f"rejected, code {k}", v) for k, v in d.rejected_by_code.items()),
                ("retried", d.retried),
                ("accepted as duplicate request (40050)", d.duplicate_request),
                ("test events", d.test_events),
                *((f"deduplicated by input, {k}", v) for k, v in d.dedup_by_input.items()),
                ("deduplicated by ledger", d.dedup_by_ledger),
                ("re-sends merged", d.resends_merged),
                *((f"withheld, {k} (derived)", v) for k, v in d.withheld_by_consent.items()),
                ("ignored statuses", d.ignored_statuses),
                ("receipts whose conversion is before the range", d.receipts_without_conversion),
            ],
        ),
        _figure(svg["delivery"], "Outcomes at the destination and what never needed sending."),
        f"<h2>Dead letters ({dl.total})</h2>",
        _figure(svg["dead_letters_per_day"], "Dead letters per UTC day, stacked by reason."),
        _html_table(("reason", "count"), list(dl.by_reason.items())),
        _html_table(
            ("reason", "message", "count"),
            [(m.reason, m.message, m.count) for m in dl.top_messages],
            text_columns=2,
        ),
        "<h2>What the topics cannot tell</h2>",
        '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in r.notes) + "</ul>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
