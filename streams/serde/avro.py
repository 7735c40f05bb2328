"""Avro encode/decode in the Confluent Schema Registry wire format.

Framing, explicitly: byte 0 is the magic byte ``0``, bytes 1-4 the big-endian schema id, the rest
is the Avro binary body (no container header). Schemas are registered under the topic's
``<topic>-value`` subject (TopicNameStrategy) through confluent-kafka's ``SchemaRegistryClient``;
the writer schema of a record is fetched by id (cached) and resolved against Leadstream's reader
schema, so older and newer compatible writers decode.

The reader schemas are the ``.avsc`` files of ``schemas/``, shipped inside the package as
``streams/serde/schemas/`` (``make schemas`` copies them; a unit test fails when the copies
differ) and read with :mod:`importlib.resources`, so an installed package needs no schema
folder. ``LEADSTREAM_SCHEMA_DIR`` (``Settings.schema_dir``) reads them from a folder instead.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import threading
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro.read import SchemaResolutionError

from streams.errors import LeadstreamError, SerdeError
from streams.serde import contract

if TYPE_CHECKING:
    from streams.settings import Settings

logger = logging.getLogger(__name__)

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")


class RegistryUnavailableError(LeadstreamError):
    """The schema registry could not be reached: transient, never a reason to dead-letter."""


def packaged_schemas() -> Traversable:
    """Return the folder of ``.avsc`` files shipped in the package (``streams/serde/schemas``)."""
    return resources.files("streams.serde") / "schemas"


def load_schemas(schema_dir: Path | None = None) -> dict[str, str]:
    """Read every ``.avsc`` of the contract, by record name, as JSON text.

    Args:
        schema_dir: A folder holding the files; None reads the copies shipped in the package.

    Raises:
        LeadstreamError: a file cannot be read; the message names it and what to do.

    """
    packaged = packaged_schemas()
    out: dict[str, str] = {}
    for rec in contract.RECORDS:
        try:
            if schema_dir is None:
                out[rec.name] = (packaged / rec.schema_file).read_text(encoding="utf-8")
            else:
                out[rec.name] = (schema_dir / rec.schema_file).read_text(encoding="utf-8")
        except OSError as exc:
            if schema_dir is None:
                where = f"the package ({packaged / rec.schema_file})"
                hint = "reinstall leadstream, or set LEADSTREAM_SCHEMA_DIR"
            else:
                where, hint = str(schema_dir / rec.schema_file), "check LEADSTREAM_SCHEMA_DIR"
            msg = f"cannot read schema {rec.name} from {where}: {exc} ({hint})"
            raise LeadstreamError(msg) from exc
    return out


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent wire-format header."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(data: bytes) -> tuple[int, memoryview]:
    """Split Confluent-framed bytes into (schema id, Avro body); SerdeError if not framed."""
    if len(data) < _HEADER.size:
        msg = f"{len(data)} bytes is too short for the Confluent wire format (5-byte header)"
        raise SerdeError(msg, reason="undecodable")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        msg = f"magic byte is {magic}, expected 0: not Confluent Avro"
        raise SerdeError(msg, reason="undecodable")
    return schema_id, memoryview(data)[_HEADER.size :]


class AvroSerde:
    """Encodes and decodes Leadstream's records, registering their schemas once per topic."""

    def __init__(self, registry: SchemaRegistryClient, schema_dir: Path | None = None) -> None:
        """Parse the reader schemas once; registration happens on first use per topic.

        ``schema_dir`` is a folder of ``.avsc`` files; None (the default) reads the schemas
        shipped in the package.
        """
        self._registry = registry
        self._texts = load_schemas(schema_dir)
        self._parsed: dict[str, Any] = {
            name: fastavro.parse_schema(json.loads(text)) for name, text in self._texts.items()
        }
        self._writer_ids: dict[tuple[str, str], int] = {}
        self._writers_by_id: dict[int, Any] = {}
        self._own_ids: dict[int, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(
        cls, registry: str | Mapping[str, str], schema_dir: Path | None = None
    ) -> AvroSerde:
        """Build a serde talking to a registry.

        ``registry`` is its URL, or the whole ``SchemaRegistryClient`` configuration
        (``Settings.schema_registry_config()``: URL, basic auth, CA file).
        """
        conf = {"url": registry} if isinstance(registry, str) else dict(registry)
        return cls(SchemaRegistryClient(conf), schema_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> AvroSerde:
        """Build the serde the settings describe (registry URL, auth, CA; schema folder if set)."""
        return cls.connect(settings.schema_registry_config(), settings.schema_dir)

    def schema_text(self, record_name: str) -> str:
        """Return the ``.avsc`` JSON text of one of Leadstream's records."""
        return self._texts[record_name]

    def register(self, topic: str, record_name: str) -> int:
        """Register ``record_name``'s schema under ``<topic>-value`` and return its id (cached)."""
        key = (topic, record_name)
        schema_id = self._writer_ids.get(key)
        if schema_id is not None:
            return schema_id
        try:
            schema_id = self._registry.register_schema(
                f"{topic}-value", Schema(self._texts[record_name], schema_type="AVRO")
            )
        except SchemaRegistryError as exc:
            msg = f"registering {record_name} for topic {topic} failed: {exc}"
            raise LeadstreamError(msg) from exc
        except Exception as exc:
            msg = f"schema registry unreachable while registering {record_name}: {exc}"
            raise RegistryUnavailableError(msg) from exc
        with self._lock:
            self._writer_ids[key] = schema_id
            self._own_ids[schema_id] = record_name
            self._writers_by_id[schema_id] = self._parsed[record_name]
        return schema_id

    def encode(self, topic: str, record_name: str, value: Mapping[str, Any]) -> bytes:
        """Encode ``value`` with ``record_name``'s schema, framed with its registered id."""
        schema_id = self.register(topic, record_name)
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._parsed[record_name], dict(value))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            msg = f"{record_name}: {exc}"
            raise SerdeError(msg, reason="schema_mismatch") from exc
        return frame(schema_id, buf.getvalue())

    def decode(self, data: bytes | None, record_name: str) -> dict[str, Any]:
        """Decode Confluent-framed Avro into a dict shaped by ``record_name``'s reader schema.

        Raises:
            SerdeError: ``undecodable`` (not framed, corrupt body), ``unknown_schema`` (id not in
                the registry) or ``schema_mismatch`` (writer schema cannot be read as this record).
            RegistryUnavailableError: the registry could not be asked (retry; do not dead-letter).

        """
        if data is None:
            msg = f"{record_name}: empty value (tombstone)"
            raise SerdeError(msg, reason="undecodable")
        schema_id, body = unframe(data)
        writer = self._writer(schema_id)
        reader = self._parsed[record_name]
        same = self._own_ids.get(schema_id) == record_name
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, None if same else reader)
        except SchemaResolutionError as exc:
            msg = f"{record_name}: writer schema id {schema_id} does not resolve: {str(exc)[:200]}"
            raise SerdeError(msg, reason="schema_mismatch") from exc
        except (
            Exception
        ) as exc:  # fastavro raises EOFError, ValueError, IndexError, UnicodeError...
            msg = (
                f"{record_name}: corrupt Avro body for schema id {schema_id}: {type(exc).__name__}"
            )
            raise SerdeError(msg, reason="undecodable") from exc
        if not isinstance(record, dict):
            msg = f"{record_name}: schema id {schema_id} is not a record schema"
            raise SerdeError(msg, reason="schema_mismatch")
        return record

    def decode_as_writer(self, data: bytes) -> tuple[str, str | None, dict[str, Any] | None]:
        """Read framed Avro as the record its own writer schema names (for scrubbing).

        Returns ``(writer full name, record name, record)``. When the writer names one of
        Leadstream's records and resolves against it, ``record`` is shaped by Leadstream's reader
        schema of that record (fields the reader does not know are dropped). Otherwise both are
        ``None``: a foreign record's fields are unknown, so nothing about them is claimed.

        Raises:
            SerdeError: not framed, unknown schema id, or corrupt body (see :meth:`decode`).
            RegistryUnavailableError: the registry could not be asked.

        """
        schema_id, body = unframe(data)
        writer = self._writer(schema_id)
        name = str(writer.get("name", "")) if isinstance(writer, dict) else str(writer)
        own = next(
            (rec for rec, parsed in self._parsed.items() if parsed.get("name") == name), None
        )
        if own is None:
            return name, None, None
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, self._parsed[own])
        except Exception:  # noqa: BLE001 - does not resolve or is corrupt: claim nothing
            return name, None, None
        if not isinstance(record, dict):
            return name, None, None
        return name, own, record

    def _writer(self, schema_id: int) -> Any:
        writer = self._writers_by_id.get(schema_id)
        if writer is not None:
            return writer
        try:
            schema = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                msg = f"schema id {schema_id} is not in the registry"
                raise SerdeError(msg, reason="unknown_schema") from exc
            msg = f"schema registry error for id {schema_id}: {exc}"
            raise RegistryUnavailableError(msg) from exc
        except Exception as exc:
            msg = f"schema registry unreachable looking up id {schema_id}: {exc}"
            raise RegistryUnavailableError(msg) from exc
        if schema.schema_type not in (None, "AVRO"):
            msg = f"schema id {schema_id} is {schema.schema_type}, not Avro"
            raise SerdeError(msg, reason="schema_mismatch")
        try:
            writer = fastavro.parse_schema(json.loads(schema.schema_str or ""))
        except Exception as exc:
            msg = f"schema id {schema_id} is not a valid Avro schema: {exc}"
            raise SerdeError(msg, reason="schema_mismatch") from exc
        with self._lock:
            self._writers_by_id[schema_id] = writer
        return writer
