"""The record contract (domain.md §1), written once: each record's name, schema file, key, topic.

Every other table of records and topics is derived from :data:`RECORDS`: the schemas the serde
loads, the topics the worker creates and registers, the record a topic carries for
``leadstream produce``, the key it is produced with, and the topics the report reads. A new
record is one line here plus its ``.avsc`` file (``schemas/``, copied into the package by
``make schemas``).

Pure data: it imports no client library and reads no environment; a topic's name comes from
the ``Settings`` attribute the record names, so renaming a topic stays a setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from streams.errors import LeadstreamError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from streams.settings import Settings

Role = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class Record:
    """One Avro record of the contract and the topic that carries it.

    Attributes:
        name: The Avro record name (namespace ``io.leadstream.v1``), e.g. ``FormSubmitted``.
        schema_file: Its ``.avsc`` file name, in ``schemas/`` and in the package.
        topic_setting: The ``Settings`` attribute holding its topic's name.
        key_fields: The record's Kafka key: the first of these fields that is present and
            non-empty. Empty when the key is not a field of the record (a dead letter keeps its
            source record's key), so no tool can key it from the record alone.
        role: ``input`` (written by other systems, read by Leadstream) or ``output``.

    """

    name: str
    schema_file: str
    topic_setting: str
    key_fields: tuple[str, ...]
    role: Role

    def topic(self, settings: Settings) -> str:
        """Return this record's topic name as configured."""
        return str(getattr(settings, self.topic_setting))


FORM_SUBMITTED = Record(
    "FormSubmitted", "form_submitted.avsc", "topic_form_submitted", ("lead_id",), "input"
)
BOOKING_CREATED = Record(
    "BookingCreated",
    "booking_created.avsc",
    "topic_booking_created",
    ("lead_id", "booking_id"),
    "input",
)
LEAD_STATUS_CHANGED = Record(
    "LeadStatusChanged",
    "lead_status_changed.avsc",
    "topic_lead_status_changed",
    ("lead_id",),
    "input",
)
CONVERSION = Record("Conversion", "conversion.avsc", "topic_conversions", ("lead_id",), "output")
DELIVERY_RECEIPT = Record(
    "DeliveryReceipt", "delivery_receipt.avsc", "topic_deliveries", ("event_id",), "output"
)
DEAD_LETTER = Record("DeadLetter", "dead_letter.avsc", "topic_dead_letter", (), "output")

#: Every record of the contract, in domain.md §1 order.
RECORDS: tuple[Record, ...] = (
    FORM_SUBMITTED,
    BOOKING_CREATED,
    LEAD_STATUS_CHANGED,
    CONVERSION,
    DELIVERY_RECEIPT,
    DEAD_LETTER,
)
#: The records other systems write and Leadstream reads.
INPUTS: tuple[Record, ...] = tuple(r for r in RECORDS if r.role == "input")

_BY_NAME = {r.name: r for r in RECORDS}


def find(name: str) -> Record | None:
    """Return the record called ``name``, or None."""
    return _BY_NAME.get(name)


def record(name: str) -> Record:
    """Return the record called ``name``.

    Raises:
        LeadstreamError: no record has that name; the message lists the known ones.

    """
    found = _BY_NAME.get(name)
    if found is None:
        known = ", ".join(_BY_NAME)
        msg = f"no record is called {name!r} (known: {known})"
        raise LeadstreamError(msg)
    return found


def topics_by_record(settings: Settings, records: Iterable[Record] = RECORDS) -> dict[str, str]:
    """Return ``{record name: topic}`` for ``records`` as configured."""
    return {r.name: r.topic(settings) for r in records}


def records_by_topic(settings: Settings, records: Iterable[Record] = RECORDS) -> dict[str, Record]:
    """Return ``{topic: record}`` for ``records`` as configured."""
    return {r.topic(settings): r for r in records}


def record_key(record_name: str, value: Mapping[str, object]) -> bytes | None:
    """Return a record's Kafka key per domain.md §1: its first non-empty key field, or None.

    None also for a record without key fields (a dead letter) or an unknown record name.
    """
    found = _BY_NAME.get(record_name)
    for name in found.key_fields if found else ():
        field = value.get(name)
        if field:
            return str(field).encode("utf-8")
    return None
