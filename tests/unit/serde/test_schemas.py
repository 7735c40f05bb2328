"""The .avsc contract: docs, namespace, optional fields, round trips and compatibility."""

from __future__ import annotations

import json
import shutil
import struct
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streams.domain.records import conversion_to_record
from streams.local.registry.server import RegistryServer
from streams.serde import contract
from streams.serde.avro import AvroSerde
from tests.unit.factories import (
    NOW,
    make_booking_record,
    make_conversion,
    make_form_record,
    make_status_record,
)

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
NAMESPACE = "io.leadstream.v1"
SCHEMA_FILES = {r.name: r.schema_file for r in contract.RECORDS}
ALL_RECORDS = sorted(SCHEMA_FILES)


def _realistic(record_name: str) -> dict[str, Any]:
    if record_name == "FormSubmitted":
        return make_form_record()
    if record_name == "BookingCreated":
        return make_booking_record()
    if record_name == "LeadStatusChanged":
        return make_status_record(value=1200.0, currency="EUR", order_id="order-77", phone=None)
    if record_name == "Conversion":
        return conversion_to_record(make_conversion(value=99.5, currency="GBP"))
    if record_name == "DeliveryReceipt":
        return {
            "event_id": "f1d2c3b4:QualifiedLead",
            "event": "QualifiedLead",
            "lead_id": "lead-000123",
            "destination": "tiktok",
            "event_source": "web",
            "event_source_id": "PIXEL123",
            "outcome": "DELIVERED",
            "api_code": 0,
            "message": "OK",
            "request_id": "20250314120000ABCDEF",
            "attempts": 2,
            "test_event": False,
            "decided_at": NOW,
        }
    assert record_name == "DeadLetter"
    return {
        "source_topic": "crm.lead-status-changed",
        "source_partition": 3,
        "source_offset": 1_234_567_890_123,
        "source_key": b"lead-000123",
        "reason": "invalid_timestamp",
        "message": "LeadStatusChanged change_id=c-1: field 'changed_at' is before 2000-01-01",
        "field": "changed_at",
        "event_id": None,
        "original": b"\x00\x00\x00\x00\x07\x02abc",
        "dead_lettered_at": NOW - timedelta(seconds=1),
    }


def _schema_json(record_name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / SCHEMA_FILES[record_name]).read_text(encoding="utf-8"))


def _evolved(record_name: str, *, default: bool = True) -> dict[str, Any]:
    """The schema with one new field appended: optional (null default) or required."""
    schema = _schema_json(record_name)
    field: dict[str, Any] = {
        "name": "added_in_v2",
        "type": ["null", "string"] if default else "string",
        "doc": "A field added by a later version of the schema.",
    }
    if default:
        field["default"] = None
    schema["fields"].append(field)
    return schema


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_schema_parses_with_fastavro(record_name: str) -> None:
    parsed = fastavro.parse_schema(_schema_json(record_name))
    assert parsed["name"] == f"{NAMESPACE}.{record_name}"
    assert parsed["type"] == "record"


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_schema_has_namespace_and_docs_everywhere(record_name: str) -> None:
    schema = _schema_json(record_name)
    assert schema["namespace"] == NAMESPACE
    assert isinstance(schema.get("doc"), str)
    assert schema["doc"].strip()
    assert schema["fields"]
    for field in schema["fields"]:
        assert isinstance(field.get("doc"), str), f"{record_name}.{field['name']} has no doc"
        assert field["doc"].strip(), f"{record_name}.{field['name']} has a blank doc"
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for named in (t for t in types if isinstance(t, dict) and t["type"] == "enum"):
            assert named["namespace"] == NAMESPACE
            assert named["doc"].strip()


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_optional_fields_are_null_first_unions_with_null_default(record_name: str) -> None:
    schema = _schema_json(record_name)
    for field in schema["fields"]:
        where = f"{record_name}.{field['name']}"
        if isinstance(field["type"], list):
            assert len(field["type"]) == 2, where
            assert field["type"][0] == "null", where
            assert field["type"][1] != "null", where
            assert "default" in field, where
            assert field["default"] is None, where
        elif "default" in field:
            assert field["default"] is not None, f"{where}: null default on a non-union"


def test_required_fields_match_the_domain_contract() -> None:
    def required(name: str) -> list[str]:
        return [
            f["name"]
            for f in _schema_json(name)["fields"]
            if not isinstance(f["type"], list) and "default" not in f
        ]

    assert required("FormSubmitted") == ["event_id", "lead_id", "occurred_at", "page_url"]
    assert required("BookingCreated") == ["booking_id", "event_id", "occurred_at"]
    assert required("LeadStatusChanged") == ["change_id", "lead_id", "status", "changed_at", "crm"]


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_round_trip_through_the_registry(
    record_name: str,
    serde: AvroSerde,
    registry_client: SchemaRegistryClient,
    registry: RegistryServer,
) -> None:
    topic = f"schemas.roundtrip.{record_name}"
    value = _realistic(record_name)

    data = serde.encode(topic, record_name, value)

    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == registry_client.get_latest_version(f"{topic}-value").schema_id
    fresh = AvroSerde(SchemaRegistryClient({"url": registry.url}), SCHEMAS)  # fetches by id
    assert fresh.decode(data, record_name) == value
    assert serde.decode(data, record_name) == value


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_schema_is_backward_compatible_with_itself(
    record_name: str, serde: AvroSerde, registry_client: SchemaRegistryClient
) -> None:
    topic = f"schemas.compat-self.{record_name}"
    serde.register(topic, record_name)
    subject = f"{topic}-value"

    assert (
        registry_client.get_compatibility() == "BACKWARD"
    )  # the global level; no subject override
    same = Schema(serde.schema_text(record_name), schema_type="AVRO")
    assert registry_client.test_compatibility(subject, same) is True


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_new_optional_field_is_backward_compatible_and_required_one_is_not(
    record_name: str, serde: AvroSerde, registry_client: SchemaRegistryClient
) -> None:
    topic = f"schemas.compat-evolve.{record_name}"
    serde.register(topic, record_name)
    subject = f"{topic}-value"

    optional = Schema(json.dumps(_evolved(record_name)), schema_type="AVRO")
    required = Schema(json.dumps(_evolved(record_name, default=False)), schema_type="AVRO")
    assert registry_client.test_compatibility(subject, optional) is True
    assert registry_client.test_compatibility(subject, required) is False


@pytest.mark.parametrize("record_name", ALL_RECORDS)
def test_evolved_reader_decodes_data_written_with_the_old_schema(
    record_name: str,
    serde: AvroSerde,
    registry_client: SchemaRegistryClient,
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    evolved_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, evolved_dir)
    (evolved_dir / SCHEMA_FILES[record_name]).write_text(
        json.dumps(_evolved(record_name)), encoding="utf-8"
    )
    topic = f"schemas.evolve-read.{record_name}"
    value = _realistic(record_name)
    old_bytes = serde.encode(topic, record_name, value)  # the writer, under <topic>-value

    reader = AvroSerde(SchemaRegistryClient({"url": registry.url}), evolved_dir)
    decoded = reader.decode(old_bytes, record_name)

    assert decoded == {**value, "added_in_v2": None}
    # The evolved schema registers as version 2 of the same subject (BACKWARD allows it).
    reader.register(topic, record_name)
    assert registry_client.get_versions(f"{topic}-value") == [1, 2]


# --- issue 13 §4: user.locale, added backward-compatibly ---------------------------------------

ADDED_IN_ISSUE_13 = {"FormSubmitted": "locale", "Conversion": "locale"}


@pytest.mark.parametrize(("record_name", "field"), sorted(ADDED_IN_ISSUE_13.items()))
def test_the_new_optional_fields_evolve_the_registered_schema_and_old_records_still_decode(
    record_name: str,
    field: str,
    registry_client: SchemaRegistryClient,
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    """The schema before the field is version 1; the current one registers as version 2."""
    before_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, before_dir)
    before = _schema_json(record_name)
    [added] = [f for f in before["fields"] if f["name"] == field]
    assert added["type"] == ["null", "string"] and added["default"] is None  # optional
    before["fields"] = [f for f in before["fields"] if f["name"] != field]
    (before_dir / SCHEMA_FILES[record_name]).write_text(json.dumps(before), encoding="utf-8")
    old_serde = AvroSerde(SchemaRegistryClient({"url": registry.url}), before_dir)
    topic = f"schemas.issue13.{record_name}"
    old_value = {k: v for k, v in _realistic(record_name).items() if k != field}
    old_bytes = old_serde.encode(topic, record_name, old_value)  # written before the field

    current = AvroSerde(SchemaRegistryClient({"url": registry.url}), SCHEMAS)
    subject = f"{topic}-value"
    assert registry_client.test_compatibility(
        subject, Schema(current.schema_text(record_name), schema_type="AVRO")
    )
    current.register(topic, record_name)
    assert registry_client.get_versions(subject) == [1, 2]
    assert current.decode(old_bytes, record_name) == {**old_value, field: None}


# --- issue 17: the Meta fields, added backward-compatibly ---------------------------------------

ADDED_IN_ISSUE_17: dict[str, tuple[str, ...]] = {
    "Conversion": ("fbc", "fbp", "meta_lead_id", "status", "phone_digits_sha256"),
    "FormSubmitted": ("fbc", "fbp", "meta_lead_id"),
    "BookingCreated": ("fbc", "fbp", "meta_lead_id"),
}


@pytest.mark.parametrize(("record_name", "added"), sorted(ADDED_IN_ISSUE_17.items()))
def test_the_meta_fields_evolve_the_schema_and_old_records_decode_with_nulls(
    record_name: str,
    added: tuple[str, ...],
    registry_client: SchemaRegistryClient,
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    """A record written before issue 17 decodes with every new field null (the default)."""
    before_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, before_dir)
    before = _schema_json(record_name)
    fields = {f["name"]: f for f in before["fields"]}
    for name in added:
        assert fields[name]["type"] == ["null", "string"] and fields[name]["default"] is None
    before["fields"] = [f for f in before["fields"] if f["name"] not in added]
    (before_dir / SCHEMA_FILES[record_name]).write_text(json.dumps(before), encoding="utf-8")
    old_serde = AvroSerde(SchemaRegistryClient({"url": registry.url}), before_dir)
    topic = f"schemas.issue17.{record_name}"
    old_value = {k: v for k, v in _realistic(record_name).items() if k not in added}
    old_bytes = old_serde.encode(topic, record_name, old_value)

    current = AvroSerde(SchemaRegistryClient({"url": registry.url}), SCHEMAS)
    subject = f"{topic}-value"
    assert registry_client.test_compatibility(
        subject, Schema(current.schema_text(record_name), schema_type="AVRO")
    )
    current.register(topic, record_name)
    assert registry_client.get_versions(subject) == [1, 2]
    assert current.decode(old_bytes, record_name) == {**old_value, **dict.fromkeys(added)}


def test_an_old_conversion_record_decodes_to_a_conversion_without_meta_fields() -> None:
    from streams.domain.records import conversion_from_record

    old = {
        k: v
        for k, v in _realistic("Conversion").items()
        if k not in ADDED_IN_ISSUE_17["Conversion"]
    }
    conv = conversion_from_record(old)
    click = conv.click
    assert (click.fbc, click.fbp, click.meta_lead_id, conv.status) == (None, None, None, None)
    assert conv.keys.phone_digits_sha256 is None
