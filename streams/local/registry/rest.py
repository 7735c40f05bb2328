"""Confluent's REST paths, bodies and error codes over the store, without HTTP plumbing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from streams.local.registry.store import (
    AVRO,
    Registry,
    RegistryError,
    SchemaReference,
    StoredSchema,
    SubjectVersion,
)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True, slots=True)
class _Request:
    params: tuple[str, ...]
    query: dict[str, str]
    body: Any

    def flag(self, name: str) -> bool:
        # The client sends both "true" (httpx params) and "True" (str.format of a bool).
        return self.query.get(name, "").lower() == "true"

    def schema_id(self) -> int:
        try:
            return int(self.params[0])
        except ValueError:
            raise RegistryError(404, 40403, f"Schema {self.params[0]} not found.") from None

    def schema_body(self) -> tuple[str, str, tuple[SchemaReference, ...]]:
        body = self.body if isinstance(self.body, dict) else {}
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise RegistryError(422, 42201, "Invalid schema: the body has no 'schema' string")
        schema_type = body.get("schemaType") or AVRO
        try:
            references = tuple(
                SchemaReference(str(r["name"]), str(r["subject"]), int(r["version"]))
                for r in body.get("references") or ()
            )
        except (KeyError, TypeError, ValueError):
            msg = "Invalid schema: each reference needs name, subject and version"
            raise RegistryError(422, 42201, msg) from None
        return schema, str(schema_type), references


def _schema_payload(stored: StoredSchema) -> dict[str, Any]:
    payload: dict[str, Any] = {"schema": stored.schema}
    return _add_type_and_refs(payload, stored.schema_type, stored.references)


def _version_payload(found: SubjectVersion) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema_id,
        "guid": found.guid,
        "schema": found.schema,
    }
    return _add_type_and_refs(payload, found.schema_type, found.references)


def _add_type_and_refs(
    payload: dict[str, Any], schema_type: str, references: tuple[SchemaReference, ...]
) -> dict[str, Any]:
    # Like Confluent, leave out the AVRO default type and an empty reference list.
    if schema_type != AVRO:
        payload["schemaType"] = schema_type
    if references:
        payload["references"] = [
            {"name": r.name, "subject": r.subject, "version": r.version} for r in references
        ]
    return payload


_Route = tuple[str, tuple[str, ...], Callable[[_Request], Any]]


class RestApi:
    """Maps Confluent Schema Registry REST calls onto a :class:`Registry`, without any sockets."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._routes: list[_Route] = [
            ("GET", (), lambda q: {}),
            ("GET", ("schemas", "types"), lambda q: [AVRO]),
            ("GET", ("schemas", "ids", "*"), self._schema_by_id),
            ("GET", ("schemas", "ids", "*", "schema"), self._raw_schema_by_id),
            ("GET", ("schemas", "ids", "*", "subjects"), self._subjects_by_id),
            ("GET", ("schemas", "ids", "*", "versions"), self._versions_by_id),
            ("GET", ("schemas", "guids", "*"), self._schema_by_guid),
            ("GET", ("subjects",), self._list_subjects),
            ("GET", ("subjects", "*", "versions"), self._list_versions),
            ("POST", ("subjects", "*", "versions"), self._register),
            ("GET", ("subjects", "*", "versions", "*"), self._get_version),
            ("GET", ("subjects", "*", "versions", "*", "schema"), self._raw_schema_by_version),
            ("GET", ("subjects", "*", "versions", "*", "referencedby"), self._referenced_by),
            ("DELETE", ("subjects", "*", "versions", "*"), self._delete_version),
            ("POST", ("subjects", "*"), self._lookup),
            ("DELETE", ("subjects", "*"), self._delete_subject),
            ("POST", ("compatibility", "subjects", "*", "versions", "*"), self._compatibility),
            ("POST", ("compatibility", "subjects", "*", "versions"), self._compatibility_all),
            ("GET", ("config",), self._get_config),
            ("PUT", ("config",), self._set_config),
            ("DELETE", ("config",), self._delete_config),
            ("GET", ("config", "*"), self._get_config),
            ("PUT", ("config", "*"), self._set_config),
            ("DELETE", ("config", "*"), self._delete_config),
            ("GET", ("mode",), lambda q: {"mode": "READWRITE"}),
            ("GET", ("mode", "*"), lambda q: {"mode": "READWRITE"}),
        ]

    def handle(self, method: str, target: str, body: bytes = b"") -> tuple[int, Any]:
        """Answer one request.

        Args:
            method: HTTP method.
            target: Path and query, e.g. ``/subjects/a%2Fb/versions?normalize=False``.
            body: Raw request body (JSON or empty).

        Returns:
            ``(HTTP status, JSON-able payload)``; errors carry ``{"error_code", "message"}``.

        """
        parts = urlsplit(target)
        # Split before unquoting: the client percent-encodes "/" inside subject names.
        segments = tuple(unquote(s) for s in parts.path.split("/") if s)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path_matched = False
        for route_method, pattern, func in self._routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            path_matched = True
            if route_method != method:
                continue
            try:
                parsed = json.loads(body) if body.strip() else None
            except ValueError:
                return 400, {"error_code": 400, "message": "Malformed JSON body"}
            try:
                return 200, func(_Request(params, query, parsed))
            except RegistryError as exc:
                return exc.status, {"error_code": exc.error_code, "message": exc.message}
        if path_matched:
            return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _schema_by_id(self, q: _Request) -> dict[str, Any]:
        return _schema_payload(self.registry.schema(q.schema_id()))

    def _schema_by_guid(self, q: _Request) -> dict[str, Any]:
        return _schema_payload(self.registry.schema_by_guid(q.params[0]))

    def _raw_schema_by_id(self, q: _Request) -> Any:
        return json.loads(self.registry.get_by_id(q.schema_id()))

    def _subjects_by_id(self, q: _Request) -> list[str]:
        pairs = self.registry.schema_versions(q.schema_id(), q.flag("deleted"))
        return sorted(
            {subject for subject, _ in pairs if subject.startswith(q.query.get("subject", ""))}
        )

    def _versions_by_id(self, q: _Request) -> list[dict[str, Any]]:
        pairs = self.registry.schema_versions(q.schema_id(), q.flag("deleted"))
        prefix = q.query.get("subject", "")
        return [{"subject": s, "version": v} for s, v in pairs if s.startswith(prefix)]

    def _list_subjects(self, q: _Request) -> list[str]:
        return self.registry.subjects(
            deleted=q.flag("deleted"),
            deleted_only=q.flag("deleted_only"),
            prefix=q.query.get("subjectPrefix", ""),
        )

    def _list_versions(self, q: _Request) -> list[int]:
        return self.registry.versions(q.params[0], q.flag("deleted"))

    def _delete_subject(self, q: _Request) -> list[int]:
        return self.registry.delete_subject(q.params[0], q.flag("permanent"))

    def _referenced_by(self, q: _Request) -> list[int]:
        subject, version = q.params
        return self.registry.referenced_by(subject, version)

    def _register(self, q: _Request) -> dict[str, Any]:
        # normalize is accepted and ignored: identity is already whitespace- and key-order-blind.
        schema, schema_type, references = q.schema_body()
        found = self.registry.register_version(q.params[0], schema, schema_type, references)
        return {
            "id": found.schema_id,
            "guid": found.guid,
            "subject": found.subject,
            "version": found.version,
        }

    def _get_version(self, q: _Request) -> dict[str, Any]:
        subject, version = q.params
        return _version_payload(self.registry.get_version(subject, version, q.flag("deleted")))

    def _raw_schema_by_version(self, q: _Request) -> Any:
        subject, version = q.params
        return json.loads(self.registry.get_version(subject, version, q.flag("deleted")).schema)

    def _delete_version(self, q: _Request) -> int:
        subject, version = q.params
        return self.registry.delete_version(subject, version, q.flag("permanent"))

    def _lookup(self, q: _Request) -> dict[str, Any]:
        schema, schema_type, references = q.schema_body()
        found = self.registry.lookup(
            q.params[0], schema, schema_type, references, deleted=q.flag("deleted")
        )
        return _version_payload(found)

    def _compatibility(self, q: _Request) -> dict[str, Any]:
        schema, schema_type, references = q.schema_body()
        subject, version = q.params
        ok, messages = self.registry.check_compatibility(
            subject, schema, version, schema_type, references
        )
        return {"is_compatible": ok, "messages": messages}

    def _compatibility_all(self, q: _Request) -> dict[str, Any]:
        schema, schema_type, references = q.schema_body()
        ok, messages = self.registry.check_compatibility_all(
            q.params[0], schema, schema_type, references
        )
        return {"is_compatible": ok, "messages": messages}

    def _get_config(self, q: _Request) -> dict[str, str]:
        subject = q.params[0] if q.params else None
        level = self.registry.get_compatibility(subject, q.flag("defaultToGlobal"))
        return {"compatibilityLevel": level}

    def _delete_config(self, q: _Request) -> dict[str, str]:
        subject = q.params[0] if q.params else None
        return {"compatibilityLevel": self.registry.delete_compatibility(subject)}

    def _set_config(self, q: _Request) -> dict[str, str]:
        body = q.body if isinstance(q.body, dict) else {}
        level = body.get("compatibility") or body.get("compatibilityLevel")
        if not isinstance(level, str):
            raise RegistryError(422, 42203, "Invalid compatibility level: the body has none")
        subject = q.params[0] if q.params else None
        return {"compatibility": self.registry.set_compatibility(level, subject)}


def _match(pattern: tuple[str, ...], segments: tuple[str, ...]) -> tuple[str, ...] | None:
    if len(pattern) != len(segments):
        return None
    params = []
    for want, got in zip(pattern, segments, strict=True):
        if want == "*":
            params.append(got)
        elif want != got:
            return None
    return tuple(params)
