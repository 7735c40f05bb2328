"""AvroSerde and the Confluent wire format: framing, error reasons, registry outages, caching."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streams.errors import LeadstreamError, SerdeError
from streams.local.registry.server import RegistryServer
from streams.serde.avro import (
    AvroSerde,
    RegistryUnavailableError,
    frame,
    load_schemas,
    unframe,
)
from tests.unit.factories import LEAD_ID, make_form_record, make_status_record

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
FORM_TOPIC = "serde.leads.form-submitted"
STATUS_TOPIC = "serde.crm.lead-status-changed"


class CountingClient(SchemaRegistryClient):
    """A real client that counts schema-by-id lookups, to prove the serde's own cache."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.get_schema_calls: list[int] = []

    def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> Any:
        self.get_schema_calls.append(schema_id)
        return super().get_schema(schema_id, *args, **kwargs)


def _client(url: str) -> SchemaRegistryClient:
    # No retries: a refused connection must fail at once, not after seconds of backoff.
    return SchemaRegistryClient({"url": url, "max.retries": 0})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def writer(registry: RegistryServer) -> AvroSerde:
    return AvroSerde(_client(registry.url), SCHEMAS)


@pytest.fixture
def reader(registry: RegistryServer) -> AvroSerde:
    """A second serde with its own client: it must look writer schemas up by id."""
    return AvroSerde(_client(registry.url), SCHEMAS)


@pytest.fixture(scope="module")
def form_bytes(writer: AvroSerde) -> bytes:
    return writer.encode(FORM_TOPIC, "FormSubmitted", make_form_record())


# --- framing ----------------------------------------------------------------------------------


def test_frame_writes_magic_zero_and_big_endian_id() -> None:
    assert frame(258, b"body") == b"\x00\x00\x00\x01\x02body"


def test_unframe_splits_id_and_body() -> None:
    schema_id, body = unframe(b"\x00\x00\x00\x01\x02body")
    assert schema_id == 258
    assert bytes(body) == b"body"


def test_unframe_accepts_an_empty_body() -> None:
    schema_id, body = unframe(b"\x00\x00\x00\x00\x07")
    assert (schema_id, bytes(body)) == (7, b"")


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_unframe_too_short_is_undecodable(data: bytes) -> None:
    with pytest.raises(SerdeError, match="too short") as info:
        unframe(data)
    assert info.value.reason == "undecodable"


@pytest.mark.parametrize("magic", [b"\x01", b"\x7f", b"{"])
def test_unframe_bad_magic_is_undecodable(magic: bytes) -> None:
    with pytest.raises(SerdeError, match="magic byte") as info:
        unframe(magic + b"\x00\x00\x00\x01body")
    assert info.value.reason == "undecodable"


def test_load_schemas_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LeadstreamError, match="LEADSTREAM_SCHEMA_DIR") as info:
        load_schemas(tmp_path)
    assert f"cannot read schema FormSubmitted from {tmp_path / 'form_submitted.avsc'}" in str(
        info.value
    )


# --- encode -----------------------------------------------------------------------------------


def test_encode_registers_under_the_topic_value_subject(
    writer: AvroSerde, registry: RegistryServer, form_bytes: bytes
) -> None:
    latest = _client(registry.url).get_latest_version(f"{FORM_TOPIC}-value")
    schema_id, _ = unframe(form_bytes)
    assert schema_id == latest.schema_id
    assert json.loads(latest.schema.schema_str)["name"] == "FormSubmitted"
    assert writer.register(FORM_TOPIC, "FormSubmitted") == schema_id  # cached, same id


def test_encode_missing_required_field_is_schema_mismatch(writer: AvroSerde) -> None:
    record = make_form_record()
    del record["page_url"]
    with pytest.raises(SerdeError, match="page_url") as info:
        writer.encode(FORM_TOPIC, "FormSubmitted", record)
    assert info.value.reason == "schema_mismatch"


def test_encode_wrong_type_is_schema_mismatch(writer: AvroSerde) -> None:
    with pytest.raises(SerdeError) as info:
        writer.encode(FORM_TOPIC, "FormSubmitted", make_form_record(occurred_at="yesterday"))
    assert info.value.reason == "schema_mismatch"


def test_register_rejected_by_compatibility_is_not_an_outage(
    writer: AvroSerde, registry: RegistryServer
) -> None:
    topic = "serde.incompatible"
    writer.register(topic, "LeadStatusChanged")
    with pytest.raises(LeadstreamError, match="registering FormSubmitted") as info:
        writer.register(topic, "FormSubmitted")  # BACKWARD: FormSubmitted cannot read it
    assert not isinstance(info.value, RegistryUnavailableError)


# --- decode -----------------------------------------------------------------------------------


def test_decode_returns_the_record(reader: AvroSerde, form_bytes: bytes) -> None:
    assert reader.decode(form_bytes, "FormSubmitted") == make_form_record()


def test_decode_tombstone_is_undecodable(reader: AvroSerde) -> None:
    with pytest.raises(SerdeError, match="tombstone") as info:
        reader.decode(None, "FormSubmitted")
    assert info.value.reason == "undecodable"


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01\x02"])
def test_decode_unframed_is_undecodable(reader: AvroSerde, data: bytes) -> None:
    with pytest.raises(SerdeError) as info:
        reader.decode(data, "FormSubmitted")
    assert info.value.reason == "undecodable"


def test_decode_json_bytes_is_undecodable(reader: AvroSerde) -> None:
    with pytest.raises(SerdeError) as info:
        reader.decode(b'{"lead_id": "lead-1"}', "FormSubmitted")
    assert info.value.reason == "undecodable"


def test_decode_unknown_schema_id(reader: AvroSerde) -> None:
    with pytest.raises(SerdeError, match="schema id 987654 is not in the registry") as info:
        reader.decode(frame(987_654, b"\x02a"), "FormSubmitted")
    assert info.value.reason == "unknown_schema"


def test_decode_other_record_is_schema_mismatch(reader: AvroSerde, form_bytes: bytes) -> None:
    with pytest.raises(SerdeError) as info:
        reader.decode(form_bytes, "LeadStatusChanged")
    assert info.value.reason == "schema_mismatch"
    assert str(info.value).startswith("LeadStatusChanged: writer schema id")


def test_decode_own_schema_of_other_record_is_schema_mismatch(
    writer: AvroSerde, form_bytes: bytes
) -> None:
    """The serde that registered FormSubmitted itself still resolves it against the reader."""
    with pytest.raises(SerdeError) as info:
        writer.decode(form_bytes, "LeadStatusChanged")
    assert info.value.reason == "schema_mismatch"


def test_decode_non_record_writer_is_schema_mismatch(
    reader: AvroSerde, registry: RegistryServer
) -> None:
    schema_id = _client(registry.url).register_schema(
        "serde.plain-string-value", Schema('"string"', schema_type="AVRO")
    )
    with pytest.raises(SerdeError) as info:
        reader.decode(frame(schema_id, b"\x06abc"), "FormSubmitted")
    assert info.value.reason == "schema_mismatch"


@pytest.mark.parametrize("cut", [6, 20, -1])
def test_decode_truncated_body_is_undecodable(
    reader: AvroSerde, form_bytes: bytes, cut: int
) -> None:
    with pytest.raises(SerdeError, match="corrupt Avro body") as info:
        reader.decode(form_bytes[:cut], "FormSubmitted")
    assert info.value.reason == "undecodable"


def test_decode_header_only_is_undecodable(reader: AvroSerde, form_bytes: bytes) -> None:
    with pytest.raises(SerdeError) as info:
        reader.decode(form_bytes[:5], "FormSubmitted")
    assert info.value.reason == "undecodable"


def test_decode_resolves_an_older_writer_against_the_reader(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """A writer without a newer optional field decodes; the field comes back as its default."""
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    for path in SCHEMAS.glob("*.avsc"):
        (old_dir / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    old = json.loads((SCHEMAS / "lead_status_changed.avsc").read_text(encoding="utf-8"))
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("email", "phone")]
    (old_dir / "lead_status_changed.avsc").write_text(json.dumps(old), encoding="utf-8")
    old_writer = AvroSerde(_client(registry.url), old_dir)
    record = {k: v for k, v in make_status_record().items() if k not in ("email", "phone")}
    data = old_writer.encode("serde.old-writer", "LeadStatusChanged", record)

    decoded = AvroSerde(_client(registry.url), SCHEMAS).decode(data, "LeadStatusChanged")

    assert decoded == {**record, "email": None, "phone": None}
    assert decoded["lead_id"] == LEAD_ID


# --- registry outages and caching -------------------------------------------------------------


def test_registry_on_a_closed_port_is_unavailable_not_serde_error(form_bytes: bytes) -> None:
    serde = AvroSerde(_client(f"http://127.0.0.1:{_free_port()}"), SCHEMAS)
    with pytest.raises(RegistryUnavailableError, match="unreachable") as info:
        serde.decode(form_bytes, "FormSubmitted")
    assert not isinstance(info.value, SerdeError)


def test_register_with_registry_down_is_unavailable() -> None:
    serde = AvroSerde(_client(f"http://127.0.0.1:{_free_port()}"), SCHEMAS)
    with pytest.raises(RegistryUnavailableError):
        serde.encode(FORM_TOPIC, "FormSubmitted", make_form_record())


def test_stopped_registry_is_unavailable(form_bytes: bytes) -> None:
    server = RegistryServer()
    server.start()
    url = server.url
    server.stop()
    serde = AvroSerde(_client(url), SCHEMAS)
    with pytest.raises(RegistryUnavailableError) as info:
        serde.decode(form_bytes, "FormSubmitted")
    assert not isinstance(info.value, SerdeError)


def test_writer_schema_is_fetched_once_per_id(registry: RegistryServer, form_bytes: bytes) -> None:
    client = CountingClient({"url": registry.url, "max.retries": 0})
    serde = AvroSerde(client, SCHEMAS)
    schema_id, _ = unframe(form_bytes)

    first = serde.decode(form_bytes, "FormSubmitted")
    second = serde.decode(form_bytes, "FormSubmitted")
    serde.decode(form_bytes, "FormSubmitted")

    assert first == second == make_form_record()
    assert client.get_schema_calls == [schema_id]


def test_cached_id_decodes_after_the_registry_stops() -> None:
    server = RegistryServer()
    server.start()
    try:
        writer = AvroSerde(_client(server.url), SCHEMAS)
        data = writer.encode(STATUS_TOPIC, "LeadStatusChanged", make_status_record())
        client = CountingClient({"url": server.url, "max.retries": 0})
        serde = AvroSerde(client, SCHEMAS)
        assert serde.decode(data, "LeadStatusChanged")["change_id"] == "c-1"
    finally:
        server.stop()

    assert serde.decode(data, "LeadStatusChanged") == make_status_record()
    assert len(client.get_schema_calls) == 1
    # An id it has not seen needs the registry, which is gone now.
    cold = AvroSerde(_client(server.url), SCHEMAS)
    with pytest.raises(RegistryUnavailableError):
        cold.decode(data, "LeadStatusChanged")


def test_own_registration_needs_no_lookup(registry: RegistryServer) -> None:
    client = CountingClient({"url": registry.url, "max.retries": 0})
    serde = AvroSerde(client, SCHEMAS)
    data = serde.encode("serde.own", "LeadStatusChanged", make_status_record())
    assert serde.decode(data, "LeadStatusChanged") == make_status_record()
    assert client.get_schema_calls == []


def test_stopped_registry_does_not_answer_warm_connections() -> None:
    server = RegistryServer()
    server.start()
    writer = AvroSerde(_client(server.url), SCHEMAS)
    form = writer.encode("serde.warm.form", "FormSubmitted", make_form_record())
    status = writer.encode("serde.warm.status", "LeadStatusChanged", make_status_record())
    warm = AvroSerde(_client(server.url), SCHEMAS)
    warm.decode(form, "FormSubmitted")  # opens a keep-alive connection
    server.stop()
    with pytest.raises(RegistryUnavailableError):
        warm.decode(status, "LeadStatusChanged")  # an id not cached: must ask the registry
