"""Topic declarations: the contract's topics (domain.md §1) and Leadstream's internal ones."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TopicT

from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    """Every topic the agents read or write."""

    form: TopicT
    booking: TopicT
    status: TopicT
    conversions: TopicT
    deliveries: TopicT
    dead_letter: TopicT
    bookings_by_lead: TopicT
    bookings_by_identity: TopicT
    identity: TopicT
    ticks: TopicT
    lead_inputs: TopicT  # form + status + bookings_by_lead + ticks, all keyed by lead_id
    # Conversions copied for Meta, so a stalled Meta delivery pauses only this topic's
    # partitions, never TikTok's (absent when Meta is not configured).
    meta_conversions: TopicT | None = None


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the topics on ``app``; internal ones are named under the app id."""

    def raw(*names: str, internal: bool = False) -> TopicT:
        return app.topic(
            *names,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
            internal=internal,
        )

    prefix = settings.app_id
    bookings_by_lead = f"{prefix}-bookings-by-lead"
    ticks = f"{prefix}-ticks"
    return Topics(
        form=raw(settings.topic_form_submitted),
        booking=raw(settings.topic_booking_created),
        status=raw(settings.topic_lead_status_changed),
        conversions=raw(settings.topic_conversions),
        deliveries=raw(settings.topic_deliveries),
        dead_letter=raw(settings.topic_dead_letter),
        bookings_by_lead=raw(bookings_by_lead, internal=True),
        bookings_by_identity=raw(f"{prefix}-bookings-by-identity", internal=True),
        identity=raw(f"{prefix}-identity", internal=True),
        ticks=raw(ticks, internal=True),
        lead_inputs=raw(
            settings.topic_form_submitted,
            settings.topic_lead_status_changed,
            bookings_by_lead,
            ticks,
        ),
        meta_conversions=(
            raw(f"{prefix}-conversions-meta", internal=True) if settings.meta_configured() else None
        ),
    )
