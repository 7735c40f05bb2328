"""Issue 16: `leadstream report` over a known history, every figure checked."""

from __future__ import annotations

import json
import re
from typing import Any

from streams.local.stack import LocalStack, wait_until
from tests.conftest import Names
from tests.integration.helpers import form, produce, status, wait_events


def _report(stack: LocalStack, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = stack.run_cli("report", "--json", *args, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_report_counts_a_known_history(stack: LocalStack, names: Names, tmp_path: Any) -> None:
    p = names.prefix
    env = names.env()
    forms = [
        form(p, 1),
        form(p, 1),  # redelivered: deduplicated by input
        form(p, 2),
        form(p, 3, ad_consent="DENIED"),
        form(p, 4, tiktok_lead_id=f"{p}-tt-4"),  # CRM route (a CRM event set is configured)
    ]
    changes = [
        status(p, 1, "c1", "qualified"),
        status(p, 1, "c1", "qualified"),  # redelivered: deduplicated by input
        status(p, 1, "c2", "won", value=120.0, currency="EUR"),
        status(p, 2, "c3", "qualified"),
        status(p, 2, "c4", "sql"),  # ApplicationApproval again: deduplicated by the ledger
        status(p, 2, "c5", "contacted"),  # not in the stage map: ignored
        status(p, 2, "c6", "won"),  # Purchase without value: dead letter invalid_value
        status(p, 3, "c7", "qualified"),  # consent DENIED: withheld
        status(p, 4, "c8", "qualified"),  # CRM route QualifiedLead
        status(p, 9, "c9", "qualified"),  # no form: waits, unmatched in the report
    ]
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready()
        produce(stack, env, names.form, *forms)
        produce(stack, env, names.status, *changes)
        wait_events(stack, p, 4, worker)

        def settled() -> dict[str, Any] | None:
            data = _report(stack, env)
            done = data["delivery"]["accepted"] == 4 and data["dead_letters"]["total"] == 1
            return data if done else None

        data = wait_until(settled, 60, "4 receipts and 1 dead letter in the report", worker)
    finally:
        worker.stop()

    assert data["records_read"] == {
        names.form: 5,
        names.booking: 0,
        names.status: 10,
        names.conversions: 4,
        names.deliveries: 4,
        names.dead_letter: 1,
    }
    assert data["funnel"] == [
        {
            "route": "web",
            "forms": 3,
            "qualified": 2,
            "won": 1,
            "qualified_rate": 2 / 3,
            "won_rate": 0.5,
            "form_to_won_rate": 1 / 3,
        },
        {
            "route": "crm",
            "forms": 1,
            "qualified": 1,
            "won": 0,
            "qualified_rate": 1.0,
            "won_rate": 0.0,
            "form_to_won_rate": 0.0,
        },
    ]
    assert data["unmatched_status_changes"] == 1
    assert data["unmatched_by_event"] == {"ApplicationApproval": 1}  # no form: the web route
    rows = {(e["route"], e["event"]): e for e in data["events"]}
    assert sorted(rows) == [
        ("crm", "QualifiedLead"),
        ("web", "ApplicationApproval"),
        ("web", "Purchase"),
    ]
    counts = {
        k: (e["conversions"], e["accepted"], e["rejected"], e["sent_without_form"])
        for k, e in rows.items()
    }
    assert counts == {
        ("crm", "QualifiedLead"): (1, 1, 0, 0),
        ("web", "Purchase"): (1, 1, 0, 0),
        ("web", "ApplicationApproval"): (2, 2, 0, 0),
    }
    assert data["status_to_accepted"]["count"] == 4
    assert data["status_to_accepted"]["max"] >= data["status_to_accepted"]["p50"] > 0
    web, crm = data["form_to_qualified"]
    # helpers: forms at NOW-1h, changes at NOW-5min
    assert web["stats"] == {"count": 2, "p50": 3300.0, "p95": 3300.0, "max": 3300.0}
    assert [b["count"] for b in web["histogram"]] == [2, 0, 0, 0, 0, 0, 0]
    assert crm["stats"]["count"] == 1
    assert data["coverage"]["events"] == 4
    assert data["coverage"]["counts"] == {
        "email": 4,
        "phone": 4,
        "external_id": 0,
        "ttclid": 4,
        "ttp": 4,
        "ip_user_agent": 4,
    }
    assert data["coverage"]["weakest"] == ["external_id"]
    d = data["delivery"]
    assert (d["accepted"], d["rejected"], d["rejected_by_code"]) == (4, 0, {})
    assert d["dedup_by_input"] == {"form": 1, "booking": 0, "status_change": 1}
    assert (d["dedup_by_ledger"], d["resends_merged"], d["ignored_statuses"]) == (1, 0, 1)
    assert d["withheld_by_consent"] == {"consent_denied": 1}
    assert d["receipts_without_conversion"] == 0
    dl = data["dead_letters"]
    assert dl["by_reason"] == {"invalid_value": 1}
    assert dl["by_source_topic"] == {names.status: 1}
    assert [sum(day["by_reason"].values()) for day in dl["by_day"]] == [1]

    # The same report through the SASL_SSL listener: every client is built from the connection.
    broker: Any = stack.broker
    if broker.kind == "kafka" and broker.sasl_ssl is not None:
        secured = {
            **env,
            "LEADSTREAM_KAFKA_BOOTSTRAP": broker.sasl_ssl.bootstrap,
            "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LEADSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "LEADSTREAM_KAFKA_SASL_USERNAME": broker.scram_user,
            "LEADSTREAM_KAFKA_SASL_PASSWORD": broker.scram_password,
            "LEADSTREAM_KAFKA_SSL_CA_LOCATION": str(broker.pki.ca_cert),
        }
        over_tls = _report(stack, secured)
        for key in ("records_read", "funnel", "events", "coverage", "delivery", "dead_letters"):
            assert over_tls[key] == data[key], key

    # A range that ends before the history began reads nothing.
    empty = _report(stack, env, "--since", "30d", "--until", "2h")
    assert set(empty["records_read"].values()) == {0}
    assert empty["delivery"]["accepted"] == 0

    # The HTML page and the terminal summary.
    page = tmp_path / "report.html"
    result = stack.run_cli("report", "--html", str(page), **env)
    assert result.returncode == 0, result.stderr
    assert "Funnel" in result.stdout and f"wrote {page}" in result.stdout
    html = page.read_text(encoding="utf-8")
    assert len(re.findall(r"<svg ", html)) == 7
    assert not re.search(r"https?://", html)
