"""Helpers for integration tests: JSON Lines records and waiting on the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.local import LocalStack, WorkerProcess, wait_until

NOW = datetime.now(tz=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def form(prefix: str, n: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"{prefix}-evt-{n}",
        "lead_id": f"{prefix}-lead-{n}",
        "occurred_at": iso(NOW - timedelta(hours=1)),
        "page_url": "https://shop.example.com/quote",
        "ttclid": f"E.C.P.{prefix}click{n}",
        "ttp": f"ttp-{n}",
        "email": f"Lead{n}.{prefix}@Example.com ",
        "phone": "07700 900123",
        "country": "GB",
        "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "ad_consent": "GRANTED",
    }
    record.update(overrides)
    return record


def status(prefix: str, n: int, change: str, stage: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "change_id": f"{prefix}-{change}",
        "lead_id": f"{prefix}-lead-{n}",
        "status": stage,
        "changed_at": iso(NOW - timedelta(minutes=5)),
        "crm": "hubspot",
    }
    record.update(overrides)
    return record


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def produce(stack: LocalStack, env: dict[str, str], topic: str, *records: dict[str, Any]) -> None:
    result = stack.run_cli("produce", topic, "-", stdin=jsonl(*records), **env)
    assert result.returncode == 0, result.stderr


def sandbox_events(stack: LocalStack, prefix: str) -> list[dict[str, Any]]:
    return [e for e in stack.sandbox_get("/_sandbox/events") if e["event_id"].startswith(prefix)]


def wait_events(
    stack: LocalStack, prefix: str, count: int, worker: WorkerProcess, timeout: float = 60
) -> list[dict[str, Any]]:
    return wait_until(
        lambda: (lambda ev: ev if len(ev) >= count else None)(sandbox_events(stack, prefix)),
        timeout,
        f"{count} events with prefix {prefix} at the sandbox",
        worker,
    )
