"""The schema registry double, driven by confluent-kafka's real client and Avro serde."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.local.registry import server as server_module
from streams.local.registry.compat import check_avro_compatibility
from streams.local.registry.server import (
    CONTENT_TYPE,
    Registry,
    RegistryError,
    RegistryServer,
    main,
)

# ---- schema factories ----------------------------------------------------------------------------

ID = {"name": "lead_id", "type": "string"}
EMAIL_OPTIONAL = {"name": "email", "type": ["null", "string"], "default": None}
EMAIL_REQUIRED = {"name": "email", "type": "string"}


def record(*fields: dict[str, Any], name: str = "Lead", **extra: Any) -> dict[str, Any]:
    return {
        "type": "record",
        "name": name,
        "namespace": "leadstream.test",
        "fields": list(fields),
        **extra,
    }


def lead(*fields: dict[str, Any], **extra: Any) -> str:
    return json.dumps(record(*fields, **extra))


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": symbols, **extra}


V1 = lead(ID)
V2 = lead(ID, EMAIL_OPTIONAL)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[RegistryServer]:
    with RegistryServer() as srv:
        yield srv


@pytest.fixture
def client(server: RegistryServer) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": server.url})


@pytest.fixture
def fresh_client(server: RegistryServer) -> Iterator[Any]:
    """New clients, so a call reaches the server instead of the client's cache."""

    def make() -> SchemaRegistryClient:
        return SchemaRegistryClient({"url": server.url})

    yield make


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": CONTENT_TYPE})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", json.loads(resp.read())
    finally:
        conn.close()


# ---- through the real SchemaRegistryClient -------------------------------------------------------


def test_register_is_idempotent_and_ids_are_global(
    client: SchemaRegistryClient, fresh_client: Any
) -> None:
    assert client.register_schema("leads-value", Schema(V1, "AVRO")) == 1
    # A fresh client skips its cache; whitespace and key order do not make a new schema.
    reordered = json.dumps(json.loads(V1), indent=4, sort_keys=True)
    assert fresh_client().register_schema("leads-value", Schema(reordered, "AVRO")) == 1
    assert fresh_client().register_schema("other-value", Schema(V1, "AVRO")) == 1
    assert client.get_versions("leads-value") == [1]
    assert client.get_versions("other-value") == [1]
    assert sorted(client.get_subjects()) == ["leads-value", "other-value"]


def test_new_version_only_when_the_schema_changes(
    client: SchemaRegistryClient, fresh_client: Any
) -> None:
    assert client.register_schema("s", Schema(V1, "AVRO")) == 1
    assert client.register_schema("s", Schema(V2, "AVRO"), normalize_schemas=True) == 2
    assert fresh_client().register_schema("s", Schema(V1, "AVRO")) == 1
    assert client.get_versions("s") == [1, 2]
    latest = fresh_client().get_latest_version("s")
    assert (latest.schema_id, latest.version, latest.subject) == (2, 2, "s")
    assert json.loads(latest.schema.schema_str) == json.loads(V2)
    first = fresh_client().get_version("s", 1)
    assert (first.schema_id, first.version) == (1, 1)


def test_get_schema_by_id(client: SchemaRegistryClient, fresh_client: Any) -> None:
    schema_id = client.register_schema("s", Schema(V2, "AVRO"))
    fetched = fresh_client().get_schema(schema_id)
    assert json.loads(fetched.schema_str) == json.loads(V2)
    assert fetched.schema_type == "AVRO"
    assert json.loads(
        fresh_client().get_schema(schema_id, subject_name="s").schema_str
    ) == json.loads(V2)
    assert [(v.subject, v.version) for v in client.get_schema_versions(schema_id)] == [("s", 1)]
    assert client.get_subjects_by_schema_id(schema_id) == ["s"]


def test_unknown_id_raises_40403(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as info:
        client.get_schema(404)
    assert (info.value.http_status_code, info.value.error_code) == (404, 40403)


def test_unknown_subject_raises_40401(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as info:
        client.get_latest_version("nope")
    assert (info.value.http_status_code, info.value.error_code) == (404, 40401)
    with pytest.raises(SchemaRegistryError) as info:
        client.get_versions("nope")
    assert info.value.error_code == 40401


def test_unknown_version_raises_40402(client: SchemaRegistryClient) -> None:
    client.register_schema("s", Schema(V1, "AVRO"))
    with pytest.raises(SchemaRegistryError) as info:
        client.get_version("s", 7)
    assert info.value.error_code == 40402


def test_lookup_schema(client: SchemaRegistryClient) -> None:
    client.register_schema("s", Schema(V1, "AVRO"))
    client.register_schema("s", Schema(V2, "AVRO"))
    found = client.lookup_schema("s", Schema(V1, "AVRO"))
    assert (found.schema_id, found.version, found.subject) == (1, 1, "s")
    with pytest.raises(SchemaRegistryError) as info:
        client.lookup_schema("s", Schema(lead(ID, field("x", "int", default=0)), "AVRO"))
    assert info.value.error_code == 40403
    with pytest.raises(SchemaRegistryError) as info:
        client.lookup_schema("missing", Schema(V1, "AVRO"))
    assert info.value.error_code == 40401


def test_compatible_change_adds_a_field_with_default(
    server: RegistryServer, client: SchemaRegistryClient
) -> None:
    client.register_schema("s", Schema(V1, "AVRO"))
    assert client.test_compatibility("s", Schema(V2, "AVRO")) is True
    status, _, body = call(
        server.url, "POST", "/compatibility/subjects/s/versions/latest?verbose=true", {"schema": V2}
    )
    assert (status, body) == (200, {"is_compatible": True, "messages": []})
    assert client.register_schema("s", Schema(V2, "AVRO")) == 2


def test_field_without_default_is_incompatible_and_named(
    server: RegistryServer, client: SchemaRegistryClient
) -> None:
    client.register_schema("s", Schema(V1, "AVRO"))
    candidate = Schema(lead(ID, EMAIL_REQUIRED), "AVRO")
    assert client.test_compatibility("s", candidate, version=1, verbose=True) is False
    status, _, body = call(
        server.url,
        "POST",
        "/compatibility/subjects/s/versions/1?verbose=true",
        {"schema": candidate.schema_str},
    )
    assert status == 200
    assert body["is_compatible"] is False
    assert body["messages"] == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'email' in the new schema has no default value "
        "and is missing in the old schema"
    ]
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema("s", candidate)
    assert (info.value.http_status_code, info.value.error_code) == (409, 409)
    assert "'email'" in info.value.error_message
    assert client.get_versions("s") == [1]


def test_type_change_string_to_int_is_incompatible(
    server: RegistryServer, client: SchemaRegistryClient
) -> None:
    client.register_schema("s", Schema(V1, "AVRO"))
    changed = lead(field("lead_id", "int"))
    assert client.test_compatibility("s", Schema(changed, "AVRO")) is False
    _, _, body = call(server.url, "POST", "/compatibility/subjects/s/versions", {"schema": changed})
    assert body["messages"] == [
        "TYPE_MISMATCH: field 'lead_id': the new schema's type 'int' cannot read the old "
        "schema's type 'string'"
    ]
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema("s", Schema(changed, "AVRO"))
    assert info.value.error_code == 409
    assert "lead_id" in info.value.error_message


def test_compatibility_levels_through_config(
    client: SchemaRegistryClient, fresh_client: Any
) -> None:
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema("s", Schema(lead(ID, field("score", "int")), "AVRO"))
    with pytest.raises(SchemaRegistryError) as info:
        client.get_compatibility("s")
    assert info.value.error_code == 40408  # no subject-level config, like Confluent

    assert client.set_compatibility("s", "forward") == {"compatibility": "FORWARD"}
    assert client.get_compatibility("s") == "FORWARD"
    # FORWARD: the old schema must read new data, so dropping a field without default fails...
    assert client.test_compatibility("s", Schema(V1, "AVRO")) is False
    # ...and adding a required field is fine.
    assert (
        client.register_schema("s", Schema(lead(ID, field("score", "int"), EMAIL_REQUIRED), "AVRO"))
        == 2
    )

    assert client.set_compatibility("s", "NONE") == {"compatibility": "NONE"}
    assert (
        fresh_client().register_schema("s", Schema(lead(field("lead_id", "boolean")), "AVRO")) == 3
    )

    client.set_compatibility(level="FULL")
    assert client.get_compatibility() == "FULL"
    assert str(client.get_config().compatibility_level) == "FULL"
    with pytest.raises(SchemaRegistryError) as info:
        client.set_compatibility("s", "SIDEWAYS")
    assert (info.value.http_status_code, info.value.error_code) == (422, 42203)


def test_invalid_schema_is_422_42201(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema("s", Schema(json.dumps(record(field("x", "Nope"))), "AVRO"))
    assert (info.value.http_status_code, info.value.error_code) == (422, 42201)
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema("s", Schema("{not json", "AVRO"))
    assert info.value.error_code == 42201


def test_delete_subject_soft_then_permanent(
    client: SchemaRegistryClient, fresh_client: Any
) -> None:
    client.register_schema("s", Schema(V1, "AVRO"))
    client.register_schema("s", Schema(V2, "AVRO"))
    assert client.delete_subject("s") == [1, 2]
    assert client.get_subjects() == []
    assert client.get_subjects(deleted=True) == ["s"]
    assert fresh_client().get_schema(2).schema_str is not None  # ids outlive their subjects
    with pytest.raises(SchemaRegistryError) as info:
        client.delete_subject("s")
    assert info.value.error_code == 40404
    assert client.delete_subject("s", permanent=True) == [1, 2]
    assert client.get_subjects(deleted=True) == []
    # The same schema keeps its id when registered again.
    assert fresh_client().register_schema("s", Schema(V2, "AVRO")) == 2


def test_references(client: SchemaRegistryClient, fresh_client: Any) -> None:
    address = json.dumps(record(field("zip", "string"), name="Address"))
    assert client.register_schema("address", Schema(address, "AVRO")) == 1
    refs = [SchemaReference("leadstream.test.Address", "address", 1)]
    with_ref = lead(ID, field("home", "leadstream.test.Address"))
    schema_id = client.register_schema("leads-value", Schema(with_ref, "AVRO", refs))
    fetched = fresh_client().get_schema(schema_id)
    assert [(r.name, r.subject, r.version) for r in fetched.references] == [
        ("leadstream.test.Address", "address", 1)
    ]
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema("broken", Schema(with_ref, "AVRO"))  # reference missing
    assert info.value.error_code == 42201


def test_avro_serializer_round_trip_with_auto_register(
    client: SchemaRegistryClient, fresh_client: Any
) -> None:
    ctx = SerializationContext("leads", MessageField.VALUE)
    serializer = AvroSerializer(client, V2, conf={"auto.register.schemas": True})
    data = serializer({"lead_id": "L-1", "email": "a@example.com"}, ctx)
    assert data is not None
    assert data[:5] == b"\x00\x00\x00\x00\x01"  # magic byte + schema id 1
    assert client.get_subjects() == ["leads-value"]

    deserializer = AvroDeserializer(fresh_client())
    assert deserializer(data, ctx) == {"lead_id": "L-1", "email": "a@example.com"}

    # Evolve: a reader on V3 decodes V2 data, filling the new field's default.
    v3 = lead(ID, EMAIL_OPTIONAL, field("score", "long", default=0))
    newer = AvroSerializer(fresh_client(), v3, conf={"auto.register.schemas": True})
    newer_data = newer({"lead_id": "L-2", "email": None, "score": 7}, ctx)
    assert newer_data is not None and newer_data[:5] == b"\x00\x00\x00\x00\x02"
    reader = AvroDeserializer(fresh_client(), v3)
    assert reader(data, ctx) == {"lead_id": "L-1", "email": "a@example.com", "score": 0}
    assert reader(newer_data, ctx) == {"lead_id": "L-2", "email": None, "score": 7}


# ---- the HTTP surface ----------------------------------------------------------------------------


def test_wire_format_content_type_error_body_and_keep_alive(server: RegistryServer) -> None:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request("GET", "/schemas/ids/9")
        resp = conn.getresponse()
        assert resp.status == 404
        assert resp.getheader("Content-Type") == CONTENT_TYPE
        assert json.loads(resp.read()) == {"error_code": 40403, "message": "Schema 9 not found."}
        sock = conn.sock
        conn.request("GET", "/subjects")
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())) == (200, [])
        assert conn.sock is sock  # same connection: HTTP/1.1 keep-alive
    finally:
        conn.close()
    assert call(server.url, "GET", "/nowhere")[0] == 404
    assert call(server.url, "PATCH", "/subjects")[0] == 405
    assert call(server.url, "GET", "/subjects/s/versions/zero")[2]["error_code"] == 42202


def test_subject_names_with_slashes(server: RegistryServer, client: SchemaRegistryClient) -> None:
    assert client.register_schema("team/leads", Schema(V1, "AVRO")) == 1
    assert client.get_subjects() == ["team/leads"]
    assert call(server.url, "GET", "/subjects/team%2Fleads/versions")[2] == [1]


def test_concurrent_registration_gets_one_id(server: RegistryServer) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def register() -> None:
        schema_id = SchemaRegistryClient({"url": server.url}).register_schema(
            "s", Schema(V2, "AVRO")
        )
        with lock:
            ids.append(schema_id)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ids == [1] * 8
    assert server.registry.versions("s") == [1]


# ---- persistence and the CLI ---------------------------------------------------------------------


def test_persistence_file_reload(tmp_path: Path) -> None:
    data = tmp_path / "registry.json"
    with RegistryServer(Registry(data)) as first:
        c = SchemaRegistryClient({"url": first.url})
        assert c.register_schema("a", Schema(V1, "AVRO")) == 1
        assert c.register_schema("a", Schema(V2, "AVRO")) == 2
        c.set_compatibility("a", "FULL")
    assert data.exists()

    with RegistryServer(Registry(data)) as second:
        c = SchemaRegistryClient({"url": second.url})
        assert json.loads(c.get_schema(2).schema_str or "") == json.loads(V2)
        assert c.get_versions("a") == [1, 2]
        assert c.get_compatibility("a") == "FULL"
        assert c.register_schema("a", Schema(V1, "AVRO")) == 1  # still known, no new id
        assert c.register_schema("b", Schema(lead(field("x", "int")), "AVRO")) == 3  # ids continue


def test_main_help_explains_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--data", "8081"):
        assert option in out


def test_main_reports_an_unusable_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--data", str(bad)])
    assert info.value.code == 2  # a configuration error, as for every leadstream command
    err = capsys.readouterr().err
    assert err.startswith(f"leadstream registry: error: --data {bad}: ")
    assert len(err.splitlines()) == 1


def test_main_serves_and_logs_its_url(tmp_path: Path) -> None:
    data = tmp_path / "reg.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.local.registry", "--port", "0", "--data", str(data)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "INFO" in line and "listening on http://127.0.0.1:" in line
        url = line.split("listening on ")[1].split()[0]
        c = SchemaRegistryClient({"url": url})
        assert c.register_schema("s", Schema(V1, "AVRO")) == 1
        assert json.loads(data.read_text())["subjects"]["s"]["versions"][0]["id"] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_request_logging_goes_to_debug_not_stderr(
    server: RegistryServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG", logger=server_module.__name__):
        call(server.url, "GET", "/subjects")
    assert capsys.readouterr().err == ""
    assert any('"GET /subjects HTTP/1.1" 200' in r.getMessage() for r in caplog.records)


# ---- the pure Registry and compatibility rules ---------------------------------------------------


def test_registry_without_http() -> None:
    reg = Registry()
    assert reg.register("s", V1) == 1
    assert reg.register("s", V1) == 1
    assert reg.register("s", V2) == 2
    assert reg.latest("s") == (2, 2, json.dumps(json.loads(V2), separators=(",", ":")))
    assert json.loads(reg.get_by_id(1)) == json.loads(V1)
    ok, messages = reg.check_compatibility(
        "s", lead(ID, EMAIL_OPTIONAL, EMAIL_REQUIRED | {"name": "phone"})
    )
    assert (ok, messages) == (
        False,
        [
            "READER_FIELD_MISSING_DEFAULT_VALUE: field 'phone' in the new schema has no default "
            "value and is missing in the old schema"
        ],
    )
    assert reg.check_compatibility("s", V1, version=1) == (True, [])
    assert reg.check_compatibility("empty", V1) == (True, [])  # nothing to be compatible with
    with pytest.raises(RegistryError) as info:
        reg.get_by_id(3)
    assert (info.value.status, info.value.error_code) == (404, 40403)
    with pytest.raises(RegistryError) as info:
        reg.latest("nope")
    assert info.value.error_code == 40401


def test_backward_transitive_checks_every_version() -> None:
    reg = Registry()
    reg.register("s", V1)
    reg.register("s", lead(ID, field("score", "int", default=0)))
    v3 = lead(ID, field("score", "int"))
    assert reg.check_compatibility_all("s", v3) == (True, [])  # v3 reads v2 data
    reg.set_compatibility("BACKWARD_TRANSITIVE", subject="s")
    ok, messages = reg.check_compatibility_all("s", v3)
    assert not ok
    assert messages == [
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'score' in the new schema has no default value "
        "and is missing in the old schema"
    ]
    with pytest.raises(RegistryError) as info:
        reg.register("s", v3)
    assert info.value.error_code == 409


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        json.dumps(record(field("x", "Unknown"))),
        json.dumps({"type": "record", "name": "R"}),
        json.dumps(record(field("x", "int"), field("x", "long"))),
        json.dumps(record(field("x", "int", default="zero"))),
        json.dumps(record(field("x", ["null", "int", "null"]))),
        json.dumps(record(field("x", ["null", ["int", "long"]]))),
        json.dumps(enum(["A", "A"])),
        "",
    ],
    ids=[
        "not-json",
        "unknown-type",
        "no-fields",
        "dup-field",
        "bad-default",
        "dup-branch",
        "nested-union",
        "dup-symbol",
        "empty",
    ],
)
def test_invalid_schemas_are_rejected(bad: str) -> None:
    with pytest.raises(RegistryError) as info:
        Registry().register("s", bad)
    assert (info.value.status, info.value.error_code) == (422, 42201)


TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
ADDRESS = record(field("street", "string"), name="Address")
ADDRESS_ZIP = record(field("street", "string"), field("zip", "string"), name="Address")
ADDRESS_ZIP_DEFAULT = record(
    field("street", "string"), field("zip", "string", default=""), name="Address"
)
STATUS = "leadstream.test.Status"


def _other(side: str) -> str:
    return "old" if side == "new" else "new"


def no_default(where: str, reader: str = "new") -> str:
    return (
        f"READER_FIELD_MISSING_DEFAULT_VALUE: field '{where}' in the {reader} schema has no "
        f"default value and is missing in the {_other(reader)} schema"
    )


def mismatch(where: str, reader_type: str, writer_type: str, reader: str = "new") -> str:
    return (
        f"TYPE_MISMATCH: field '{where}': the {reader} schema's type '{reader_type}' cannot read "
        f"the {_other(reader)} schema's type '{writer_type}'"
    )


def missing_symbols(where: str, symbols: list[str], reader: str = "new") -> str:
    return (
        f"MISSING_ENUM_SYMBOLS: field '{where}': the {reader} schema's enum '{STATUS}' lacks "
        f"symbols {symbols} of the {_other(reader)} schema and has no default"
    )


def test_message_helpers_match_the_literal_wording() -> None:
    assert no_default("email") == (
        "READER_FIELD_MISSING_DEFAULT_VALUE: field 'email' in the new schema has no default "
        "value and is missing in the old schema"
    )
    assert mismatch("n", "int", "long", reader="old") == (
        "TYPE_MISMATCH: field 'n': the old schema's type 'int' cannot read the new schema's "
        "type 'long'"
    )


def array(items: Any) -> dict[str, Any]:
    return {"type": "array", "items": items}


def map_of(values: Any) -> dict[str, Any]:
    return {"type": "map", "values": values}


@pytest.mark.parametrize(
    ("old", "new", "level", "expected"),
    [
        # promotions: the new (reader) type may widen the old (writer) type
        (lead(field("n", "int")), lead(field("n", "long")), "BACKWARD", []),
        (lead(field("n", "int")), lead(field("n", "double")), "BACKWARD", []),
        (lead(field("n", "long")), lead(field("n", "float")), "BACKWARD", []),
        (lead(field("n", "float")), lead(field("n", "double")), "BACKWARD", []),
        (lead(field("n", "string")), lead(field("n", "bytes")), "BACKWARD", []),
        (lead(field("n", "bytes")), lead(field("n", "string")), "FULL", []),
        (
            lead(field("n", "long")),
            lead(field("n", "int")),
            "BACKWARD",
            [mismatch("n", "int", "long")],
        ),
        (
            lead(field("n", "int")),
            lead(field("n", "long")),
            "FORWARD",
            [mismatch("n", "int", "long", reader="old")],
        ),
        (
            lead(field("n", "double")),
            lead(field("n", "float")),
            "FULL",
            [mismatch("n", "float", "double")],
        ),
        # logical types resolve by their underlying type
        (lead(field("at", TS_MILLIS)), lead(field("at", "long")), "FULL", []),
        (
            lead(field("at", TS_MILLIS)),
            lead(field("at", "int")),
            "BACKWARD",
            [mismatch("at", "int", "long")],
        ),
        # unions with null
        (
            lead(field("e", "string")),
            lead(field("e", ["null", "string"], default=None)),
            "BACKWARD",
            [],
        ),
        (lead(field("e", ["null", "int"])), lead(field("e", ["null", "long"])), "BACKWARD", []),
        (
            lead(field("e", ["null", "string"])),
            lead(field("e", "string")),
            "BACKWARD",
            [mismatch("e", "string", "null")],
        ),
        (
            lead(field("e", ["null", "string"])),
            lead(field("e", ["null", "int"])),
            "BACKWARD",
            [
                "MISSING_UNION_BRANCH: field 'e': the new schema's union has no branch that can "
                "read the old schema's type 'string'"
            ],
        ),
        # enums
        (
            lead(field("status", enum(["NEW", "WON"]))),
            lead(field("status", enum(["NEW", "WON", "LOST"]))),
            "BACKWARD",
            [],
        ),
        (
            lead(field("status", enum(["NEW", "WON", "LOST"]))),
            lead(field("status", enum(["NEW", "WON"]))),
            "BACKWARD",
            [missing_symbols("status", ["LOST"])],
        ),
        (
            lead(field("status", enum(["NEW", "WON", "LOST"]))),
            lead(field("status", enum(["NEW", "WON"], default="NEW"))),
            "BACKWARD",
            [],
        ),
        (
            lead(field("status", enum(["NEW", "WON"]))),
            lead(field("status", enum(["NEW", "WON", "LOST"]))),
            "FORWARD",
            [missing_symbols("status", ["LOST"], reader="old")],
        ),
        # nested records, and a named type referenced a second time by name
        (lead(field("home", ADDRESS)), lead(field("home", ADDRESS_ZIP_DEFAULT)), "FULL", []),
        (
            lead(field("home", ADDRESS), field("work", "leadstream.test.Address")),
            lead(field("home", ADDRESS_ZIP), field("work", "leadstream.test.Address")),
            "BACKWARD",
            [no_default("home.zip"), no_default("work.zip")],
        ),
        (
            lead(field("home", ["null", ADDRESS])),
            lead(field("home", ["null", ADDRESS_ZIP])),
            "BACKWARD",
            [no_default("home.zip")],
        ),
        # arrays and maps
        (lead(field("tags", array("int"))), lead(field("tags", array("long"))), "BACKWARD", []),
        (
            lead(field("attrs", map_of("string"))),
            lead(field("attrs", map_of("int"))),
            "BACKWARD",
            [mismatch("attrs{}", "int", "string")],
        ),
        (
            lead(field("people", array(ADDRESS))),
            lead(field("people", array(ADDRESS_ZIP))),
            "BACKWARD",
            [no_default("people[].zip")],
        ),
        # removing fields: fine backward, needs a default in the old schema forward
        (V2, V1, "BACKWARD", []),
        (V2, V1, "FULL", []),
        (lead(ID, EMAIL_REQUIRED), V1, "FULL", [no_default("email", reader="old")]),
        (lead(ID, EMAIL_REQUIRED), V1, "BACKWARD", []),
        (V1, lead(ID, EMAIL_REQUIRED), "FULL", [no_default("email")]),
        (lead(ID, EMAIL_REQUIRED), lead(field("lead_id", "int")), "NONE", []),
        # renames: a record needs an alias, a field too
        (
            V1,
            json.dumps(record(ID, name="Prospect")),
            "BACKWARD",
            [
                "NAME_MISMATCH: the top-level schema: the new schema's name "
                "'leadstream.test.Prospect' does not match the old schema's name "
                "'leadstream.test.Lead'"
            ],
        ),
        (V1, json.dumps(record(ID, name="Prospect", aliases=["Lead"])), "BACKWARD", []),
        (V1, lead(field("id", "string", aliases=["lead_id"])), "BACKWARD", []),
        # a recursive type terminates
        (
            lead(field("next", ["null", "Lead"], default=None)),
            lead(field("next", ["null", "Lead"], default=None), field("n", "int", default=0)),
            "FULL",
            [],
        ),
    ],
)
def test_avro_compatibility_rules(old: str, new: str, level: str, expected: list[str]) -> None:
    assert check_avro_compatibility(new, old, level) == expected
