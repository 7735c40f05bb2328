"""Measurement 5: state memory per lead in the lead-context table.

``python -m benchmarks.state_memory --leads N`` prints one JSON object. Run as a subprocess so
that a million entries never share a heap with the broker's sandbox thread or the next run.

* **JSON bytes per lead**: :func:`streams.domain.state_json.lead_state_to_json` of leads built by
  the real pure core (form submit -> ``qualified`` -> ``won`` with a value), i.e. the exact
  changelog and table value. Two shapes are reported: the benchmark's e2e lead (form +
  qualified: context, one ledger entry, two seen ids) and the *typical* lead (form + qualified +
  won: context, two ledger entries, three seen ids), which is the one used for memory.
* **Python memory per lead**: ``N`` entries in a ``dict[bytes, bytes]`` (lead id -> state JSON),
  which is what Faust's ``memory://`` store holds for a table with raw serializers, measured
  with tracemalloc (and cross-checked with the RSS delta of a separate pass). Values are the
  typical lead's JSON with the lead number substituted in its ids (the numbers are fixed-width,
  so every value has the exact length the core produces). Reported per lead and extrapolated to
  1,000,000 leads when ``N`` is smaller.

Extras for context: the store's ``key -> partition`` dict that Faust keeps after changelog
recovery, and the identity (2 keys per lead) and delivered (1 key per conversion) tables.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks import data
from streams.domain import intake, state_json
from streams.domain import lead as core
from streams.domain.types import FormSubmit, LeadState, SourceRef, StatusChange
from streams.settings import load_settings

MILLION = 1_000_000
MARK = 4_321_987
"""Lead number of the template lead: seven digits, as in every id of the benchmark's leads."""


def lead_states(n: int, now: datetime) -> tuple[LeadState, LeadState]:
    """Return lead ``n``'s state after form + qualified, and after form + qualified + won."""
    rules = load_settings().rules()
    prefix = "bench"
    form = intake.form_from_record(data.form_record(prefix, n, now), now)
    qualified = intake.status_from_record(
        data.status_record(prefix, n, now - timedelta(minutes=30)), now
    )
    won_record = data.status_record(prefix, n, now - timedelta(minutes=5), stage="won")
    won_record.update(
        change_id=f"{prefix}-chg-{n:07d}-won", value=1200.0, currency="EUR", order_id=f"SO-{n:07d}"
    )
    won = intake.status_from_record(won_record, now)
    if not isinstance(form, FormSubmit):
        msg = f"benchmark form rejected: {form.message}"
        raise ValueError(msg)
    if not isinstance(qualified, StatusChange) or not isinstance(won, StatusChange):
        msg = "benchmark status change rejected"
        raise ValueError(msg)
    source = SourceRef("crm.lead-status-changed", 0, n)
    state = core.on_form(None, form, rules, now).state
    e2e = core.on_status_change(state, qualified, source, rules, now).state
    typical = core.on_status_change(e2e, won, source, rules, now).state
    assert e2e is not None and typical is not None
    # Two conversions (ApplicationApproval, the order's Purchase) + the qualified stage's entry.
    assert len(typical.sent) == 3, typical.sent
    return e2e, typical


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fill(leads: int, template: bytes, key_template: bytes) -> dict[bytes, bytes]:
    mark = str(MARK).encode()
    store: dict[bytes, bytes] = {}
    for i in range(leads):
        digits = b"%07d" % i
        store[key_template.replace(mark, digits)] = template.replace(mark, digits)
    return store


def _traced(build: Callable[[], Any]) -> tuple[Any, int]:
    """Build something under tracemalloc; return it and the bytes it holds."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    built = build()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return built, held


def measure(leads: int) -> dict[str, Any]:
    """Measure JSON size and dict memory per lead for ``leads`` entries."""
    now = datetime.now(tz=UTC).replace(microsecond=123000)
    e2e_state, typical_state = lead_states(MARK, now)
    template = state_json.lead_state_to_json(typical_state)
    key_template = data.lead_id("bench", MARK).encode()
    e2e_bytes = len(state_json.lead_state_to_json(e2e_state))
    samples = [0, 1, 255, 99_999, 500_000, 999_999]
    sample_sizes = [len(state_json.lead_state_to_json(lead_states(i, now)[1])) for i in samples]

    # Pass 1: RSS delta, without tracemalloc's own overhead.
    gc.collect()
    rss_before = _rss_bytes()
    store = _fill(leads, template, key_template)
    rss_delta = _rss_bytes() - rss_before
    del store
    gc.collect()

    # Pass 2: tracemalloc, the figure reported.
    store, traced = _traced(lambda: _fill(leads, template, key_template))
    assert len(store) == leads
    after_recovery: dict[bytes, int]
    after_recovery, partition_map = _traced(lambda: dict.fromkeys(store, 3))
    identity, identity_bytes = _traced(
        lambda: {
            (p + b":" + b"%064x" % (i * 2 + (p == b"p"))): key
            for i, key in enumerate(store)
            for p in (b"e", b"p")
        }
    )
    delivered, delivered_bytes = _traced(
        lambda: {
            b"bench-evt-%07d:%s" % (i, event): b"1764072000123"
            for i in range(leads)
            for event in (b"QualifiedLead", b"Purchase")
        }
    )
    per_lead = traced / leads
    return {
        "leads_measured": leads,
        "extrapolated": leads < MILLION,
        "json_bytes_e2e_lead": e2e_bytes,
        "json_bytes_typical_lead": len(template),
        "json_bytes_typical_samples": sample_sizes,
        "key_bytes": len(key_template),
        "typical_lead": "form + qualified + won: full click context, 2 ledger entries, 3 seen ids",
        "dict_bytes_per_lead": round(per_lead, 1),
        "dict_bytes_per_lead_rss": round(rss_delta / leads, 1),
        "dict_mib_for_1m_leads": round(per_lead * MILLION / 2**20, 1),
        "partition_map_bytes_per_lead": round(partition_map / leads, 1),
        "identity_table_bytes_per_lead": round(identity_bytes / leads, 1),
        "delivered_table_bytes_per_lead": round(delivered_bytes / leads, 1),
        "sample_value": template.decode(),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the measurement as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_memory")
    parser.add_argument("--leads", type=int, default=MILLION)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.leads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
