"""Domain types: frozen value objects the pure core takes and returns.

Match keys are always hashed by the time a value reaches one of these types; raw email, phone or
external id never live in a domain object, so they can never reach a table, a topic or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from streams.domain.mapping import DEFAULT_STAGE_MAP_CRM, DEFAULT_STAGE_MAP_WEB


class Consent(StrEnum):
    """Consent to ad measurement, as recorded with the form submit."""

    GRANTED = "GRANTED"
    DENIED = "DENIED"
    UNKNOWN = "UNKNOWN"


class Channel(StrEnum):
    """How a conversion is routed: the pixel (web) or the CRM event set (crm)."""

    WEB = "WEB"
    CRM = "CRM"


class ConsentPolicy(StrEnum):
    """What to do with UNKNOWN consent."""

    GRANTED_ONLY = "granted-only"
    UNLESS_DENIED = "unless-denied"


class SourceKind(StrEnum):
    """Which input produced a conversion."""

    BOOKING = "booking"
    STATUS_CHANGE = "status_change"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an input record came from, for dead letters and logs."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class MatchKeys:
    """Hashed match keys (SHA-256 lowercase hex), each optional."""

    email_sha256: str | None = None
    phone_sha256: str | None = None
    external_id_sha256: str | None = None
    phone_digits_sha256: str | None = None
    """The phone hashed without its ``+`` (Meta's rule); None when only a ready hash was given."""

    def is_empty(self) -> bool:
        """Return True when no key is present."""
        return not (self.email_sha256 or self.phone_sha256 or self.external_id_sha256)

    def fill(self, fallback: MatchKeys) -> MatchKeys:
        """Return these keys with the absent ones taken from ``fallback``."""
        # The two hashes of one phone travel together: never this phone with that one's digits.
        # The same TikTok hash is the same number, so its Meta form can come from the fallback
        # (a booking re-encoded on its way to its lead carries only the TikTok hash).
        if not self.phone_sha256:
            phone, digits = fallback.phone_sha256, fallback.phone_digits_sha256
        else:
            phone, digits = self.phone_sha256, self.phone_digits_sha256
            if digits is None and fallback.phone_sha256 == phone:
                digits = fallback.phone_digits_sha256
        return MatchKeys(
            email_sha256=self.email_sha256 or fallback.email_sha256,
            phone_sha256=phone,
            external_id_sha256=self.external_id_sha256 or fallback.external_id_sha256,
            phone_digits_sha256=digits,
        )


def _stricter(a: Consent, b: Consent) -> Consent:
    if Consent.DENIED in (a, b):
        return Consent.DENIED
    if Consent.GRANTED in (a, b):
        return Consent.GRANTED
    return Consent.UNKNOWN


def _fill_value(own: Any, fallback: Any) -> Any:
    if isinstance(own, Consent):
        return _stricter(own, fallback)
    if isinstance(own, bool):
        return own or fallback
    return own if own is not None else fallback


@dataclass(frozen=True, slots=True)
class ClickContext:
    """The ad click behind a lead: where the visitor landed, the click ids, device and consent.

    The one statement of the click fields. A form submit carries the full click, the lead's
    stored context keeps it, a booking carries the part it knows (page, ip, user agent, click
    ids) and a conversion inherits it; the Avro mapping (:mod:`streams.domain.records`) and
    :meth:`fill` go over these fields by name, so a new optional click field is declared here,
    then validated in :mod:`streams.domain.intake`, given a short key in
    :mod:`streams.domain.state_json` and added to the ``.avsc`` files (tests name any of these
    that is missed). Every field is optional here; the form requires ``page_url`` at intake.
    """

    page_url: str | None = None
    referrer_url: str | None = None
    ttclid: str | None = None
    ttp: str | None = None
    tiktok_lead_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    ad_consent: Consent = Consent.UNKNOWN
    limited_data_use: bool = False
    locale: str | None = None
    fbc: str | None = None
    fbp: str | None = None
    meta_lead_id: str | None = None

    def fill(self, fallback: ClickContext) -> ClickContext:
        """Return this click with its empty fields taken from ``fallback``.

        A value present here wins; consent takes the most restrictive answer (``DENIED`` beats
        ``GRANTED`` beats ``UNKNOWN``) and ``limited_data_use`` is on when either has it on.
        """
        return ClickContext(
            **{
                f.name: _fill_value(getattr(self, f.name), getattr(fallback, f.name))
                for f in fields(self)
            }
        )


CLICK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ClickContext))
"""The click fields, named as in the ``FormSubmitted`` and ``Conversion`` records."""


@dataclass(frozen=True, slots=True)
class FormSubmit:
    """A validated, hashed website form submit: the lead's click and who it was."""

    event_id: str
    lead_id: str
    occurred_at: datetime
    keys: MatchKeys = MatchKeys()
    form_id: str | None = None
    country: str | None = None
    click: ClickContext = ClickContext()


@dataclass(frozen=True, slots=True)
class Booking:
    """A validated, hashed booking.

    Its ``click`` holds what the booking page knew itself (``page_url``, ``ip``, ``user_agent``,
    ``ttclid``, ``ttp``); the rest of the click comes from the lead's form.
    """

    booking_id: str
    event_id: str
    occurred_at: datetime
    lead_id: str | None = None
    keys: MatchKeys = MatchKeys()
    value: float | None = None
    currency: str | None = None
    click: ClickContext = ClickContext()
    scheduled_for: datetime | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A validated, hashed CRM lead status change."""

    change_id: str
    lead_id: str
    status: str
    changed_at: datetime
    crm: str
    previous_status: str | None = None
    value: float | None = None
    currency: str | None = None
    order_id: str | None = None
    keys: MatchKeys = MatchKeys()


@dataclass(frozen=True, slots=True)
class LeadContext:
    """A lead's form submit as kept in the lead table: its ids, hashed keys and click."""

    lead_id: str
    event_id: str
    occurred_at: datetime
    keys: MatchKeys = MatchKeys()
    click: ClickContext = ClickContext()


@dataclass(frozen=True, slots=True)
class Conversion:
    """A destination-neutral conversion, enriched and deduplicated, ready to send."""

    event_id: str
    event: str
    event_time: datetime
    lead_id: str
    source_kind: SourceKind
    source_id: str
    channel: Channel
    matched: bool
    created_at: datetime
    keys: MatchKeys = MatchKeys()
    click: ClickContext = ClickContext()
    crm: str | None = None
    value: float | None = None
    currency: str | None = None
    order_id: str | None = None
    status: str | None = None
    """The CRM stage of a status-change conversion, so each destination maps it by its own map."""
    destination: str | None = None
    """None: for every configured destination. ``"meta"``: a Meta-only event the core chose
    (a Conversion Leads stage, or a status only Meta's stage map names); ``event`` and
    ``event_id`` are then Meta's own."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input cannot be processed: a dead letter's reason and a message naming the field."""

    reason: str
    message: str
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """A status change or booking waiting for its lead's form submit."""

    item: StatusChange | Booking
    source: SourceRef
    received_at: datetime


@dataclass(frozen=True, slots=True)
class LeadState:
    """Everything Leadstream keeps per lead: click context, dedup ledgers and waiting inputs.

    ``sent`` maps conversion event_id to when it was emitted (the ledger of rule 2);
    ``seen`` maps input ids (change_id, booking_id, form event_id) to when they were first seen
    (rule 1). Both are pruned by :func:`streams.domain.lead.expire`.
    """

    lead_id: str
    context: LeadContext | None = None
    sent: Mapping[str, datetime] = field(default_factory=dict)
    seen: Mapping[str, datetime] = field(default_factory=dict)
    pending: tuple[Pending, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    """The configurable rules of the core (mapping, consent, windows)."""

    stage_map_web: Mapping[str, str] = field(default_factory=lambda: DEFAULT_STAGE_MAP_WEB)
    stage_map_crm: Mapping[str, str] = field(default_factory=lambda: DEFAULT_STAGE_MAP_CRM)
    consent_policy: ConsentPolicy = ConsentPolicy.GRANTED_ONLY
    crm_routing: bool = False
    pending_wait: timedelta = timedelta(hours=24)
    ledger_retention: timedelta = timedelta(days=90)
    lead_retention: timedelta = timedelta(days=90)
    input_dedup_window: timedelta = timedelta(days=90)
    purchase_event: str = "Purchase"
    booking_event: str = "Schedule"
    stage_map_meta: Mapping[str, str] | None = None
    """Meta's stage map when the Meta destination is configured, else None (no Meta-only events)."""
    meta_lead_event: str = "Lead"
    """The first Conversion Leads stage, sent when an Instant Form lead's form arrives."""

    def stage_map_for(self, channel: Channel) -> Mapping[str, str]:
        """Return the stage map of a route (domain.md §4)."""
        return self.stage_map_crm if channel is Channel.CRM else self.stage_map_web


@dataclass(frozen=True, slots=True)
class DeadItem:
    """An input that cannot become a conversion, to be dead-lettered with its source."""

    item: FormSubmit | Booking | StatusChange
    source: SourceRef | None
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one step of a lead's state machine.

    ``state`` is the new state to store (None: delete the key). ``counts`` maps counter names to
    increments, e.g. ``emitted``, ``duplicate_input``, ``withheld_consent_denied``.
    """

    state: LeadState | None
    conversions: tuple[Conversion, ...] = ()
    dead: tuple[DeadItem, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
