"""Table declarations: changelog-backed state, partitioned like the topics that write it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TableT

from streams.settings import Settings


@dataclass(frozen=True)
class Tables:
    """Every table the agents use; values are bytes encoded by the pure core."""

    leads: TableT  # lead_id -> LeadState (compact JSON, hashed keys only)
    identity: TableT  # sha256(email|phone) -> lead_id
    delivered: TableT  # conversion event_id -> delivered-at millis (Leadstream's own send ledger)
    dead_lettered: TableT  # "topic:partition:offset" -> dead-lettered-at millis (once per record)


def declare_tables(
    app: faust.App,
    settings: Settings,
    on_lead_changelog: Callable[[Any], Awaitable[None]] | None = None,
) -> Tables:
    """Declare the tables on ``app``; changelogs are ``<app id>-<table>-changelog``."""

    def table(name: str, **extra: Any) -> TableT:
        return app.Table(
            name,
            default=None,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.topic_partitions,
            **extra,
        )

    leads_extra = {"on_changelog_event": on_lead_changelog} if on_lead_changelog else {}
    return Tables(
        leads=table("leads", **leads_extra),
        identity=table("identity"),
        delivered=table("delivered"),
        dead_lettered=table("dead_lettered"),
    )
