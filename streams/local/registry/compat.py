"""Avro schema parsing, identity and compatibility per the Avro schema resolution rules."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastavro.schema import parse_schema

__all__ = [
    "Compatibility",
    "ParsedSchema",
    "SchemaError",
    "check_avro_compatibility",
    "incompatibilities",
    "parse_avro",
    "reader_incompatibilities",
]

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
_NAMED = frozenset({"record", "enum", "fixed"})

# (writer type, reader type) pairs a reader may promote, from the Avro specification.
PROMOTIONS = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    }
)


class Compatibility(enum.StrEnum):
    """A subject's compatibility level, as Confluent Schema Registry names them."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def backward(self) -> bool:
        """Whether the new schema must read data written with the old ones."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Whether the old schemas must read data written with the new one."""
        return self.value.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        """Whether the check covers every live version rather than only the latest."""
        return self.value.endswith("_TRANSITIVE")


class SchemaError(ValueError):
    """The text is not a valid Avro schema."""


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    """A validated Avro schema.

    Attributes:
        root: The schema as fastavro parsed it: full names, named types referenced by name.
        named: Every named type the schema (and its references) defines, by full name.
        canonical: Key-sorted compact JSON; two texts with the same canonical are the same schema.
        text: Compact JSON in the author's key order, the form the registry serves back.

    """

    root: Any
    named: Mapping[str, Any]
    canonical: str
    text: str


def parse_avro(schema_str: str, references: Sequence[str] = ()) -> ParsedSchema:
    """Parse and validate an Avro schema.

    Args:
        schema_str: The schema as JSON text.
        references: Texts of the schemas it references, dependencies first; their named types
            become resolvable from ``schema_str``.

    Returns:
        The parsed schema.

    Raises:
        SchemaError: The text is not JSON or not a valid Avro schema.

    """
    try:
        obj = json.loads(schema_str)
    except (TypeError, ValueError) as exc:
        msg = f"Invalid schema: not JSON: {exc}"
        raise SchemaError(msg) from exc
    named: dict[str, Any] = {}
    try:
        for ref in references:
            parse_schema(json.loads(ref), named)
        root = parse_schema(obj, named)
    except Exception as exc:  # fastavro raises KeyError/TypeError/... as well as its own errors
        msg = f"Invalid schema: {type(exc).__name__}: {exc}"
        raise SchemaError(msg) from exc
    _require_fields(obj)
    _validate(root, named, set())
    return ParsedSchema(
        root=root,
        named=named,
        canonical=json.dumps(obj, sort_keys=True, separators=(",", ":")),
        text=json.dumps(obj, separators=(",", ":")),
    )


def _require_fields(node: Any) -> None:
    """Reject records without a ``fields`` list (fastavro silently assumes an empty one)."""
    if isinstance(node, list):
        for branch in node:
            _require_fields(branch)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("record", "error"):
        fields = node.get("fields")
        if not isinstance(fields, list):
            msg = f"Invalid schema: record {node.get('name')!r} has no 'fields' list"
            raise SchemaError(msg)
        for fld in fields:
            if isinstance(fld, dict):
                _require_fields(fld.get("type"))
    elif kind == "array":
        _require_fields(node.get("items"))
    elif kind == "map":
        _require_fields(node.get("values"))
    else:
        _require_fields(kind)


def _validate(node: Any, named: Mapping[str, Any], seen: set[str]) -> None:
    """Reject what fastavro lets through: duplicate field names and duplicate union branches."""
    if isinstance(node, str):
        if node not in PRIMITIVES and node not in seen:
            seen.add(node)
            _validate(named[node], named, seen)
        return
    if isinstance(node, list):
        keys: set[str] = set()
        for branch in node:
            resolved = _resolve(branch, named)
            if isinstance(resolved, list):
                msg = "Invalid schema: a union may not immediately contain another union"
                raise SchemaError(msg)
            key = _describe(resolved)
            if key in keys:
                msg = f"Invalid schema: duplicate union branch {key!r}"
                raise SchemaError(msg)
            keys.add(key)
            _validate(branch, named, seen)
        return
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in _COMPLEX:
        _validate(kind, named, seen)
        return
    if kind in ("record", "error"):
        seen.add(node["name"])
        names: set[str] = set()
        for fld in node["fields"]:
            if fld["name"] in names:
                msg = f"Invalid schema: record {node['name']!r} repeats field {fld['name']!r}"
                raise SchemaError(msg)
            names.add(fld["name"])
            _validate(fld["type"], named, seen)
    elif kind == "array":
        _validate(node["items"], named, seen)
    elif kind == "map":
        _validate(node["values"], named, seen)


def _resolve(node: Any, named: Mapping[str, Any]) -> Any:
    """Follow name references and strip wrappers (logical types, ``{"type": X}``) to the type."""
    while True:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return node
            node = named[node]
        elif isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, str) and kind in _COMPLEX:
                return node
            node = kind  # a primitive (maybe with a logicalType) or a reference, wrapped
        else:
            return node


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    kind: str = node["type"]
    return "record" if kind == "error" else kind


def _describe(node: Any) -> str:
    kind = _kind(node)
    return str(node["name"]) if kind in _NAMED else kind


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names_match(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    """Unqualified names match, or one of the reader's aliases names the writer."""
    r_name, w_name = str(reader["name"]), str(writer["name"])
    if _short(r_name) == _short(w_name):
        return True
    namespace = r_name.rsplit(".", 1)[0] if "." in r_name else ""
    for alias in reader.get("aliases") or ():
        qualified = alias if "." in alias or not namespace else f"{namespace}.{alias}"
        if w_name in (alias, qualified):
            return True
    return False


def _where(location: str) -> str:
    return f"field '{location}'" if location else "the top-level schema"


def _join(location: str, name: str) -> str:
    return f"{location}.{name}" if location else name


class _Resolution:
    """Checks, per the Avro resolution rules, that a reader schema can decode a writer's data."""

    def __init__(
        self, reader: ParsedSchema, writer: ParsedSchema, reader_label: str, writer_label: str
    ) -> None:
        self._r_named = reader.named
        self._w_named = writer.named
        self._r = reader_label
        self._w = writer_label
        # Record pairs being compared further up the stack are assumed compatible (recursive types).
        self._active: set[tuple[str, str]] = set()

    def compare(self, reader: Any, writer: Any, location: str) -> list[str]:
        r = _resolve(reader, self._r_named)
        w = _resolve(writer, self._w_named)
        r_kind, w_kind = _kind(r), _kind(w)
        if w_kind == "union":
            return [m for branch in w for m in self.compare(r, branch, location)]
        if r_kind == "union":
            return self._union(r, w, location)
        if r_kind != w_kind:
            if (w_kind, r_kind) in PROMOTIONS:
                return []
            return [
                f"TYPE_MISMATCH: {_where(location)}: the {self._r} schema's type "
                f"'{_describe(r)}' cannot read the {self._w} schema's type '{_describe(w)}'"
            ]
        if r_kind in _NAMED and not _names_match(r, w):
            return [
                f"NAME_MISMATCH: {_where(location)}: the {self._r} schema's name '{r['name']}' "
                f"does not match the {self._w} schema's name '{w['name']}'"
            ]
        if r_kind == "record":
            return self._record(r, w, location)
        if r_kind == "enum":
            return self._enum(r, w, location)
        if r_kind == "fixed" and r["size"] != w["size"]:
            return [
                f"FIXED_SIZE_MISMATCH: {_where(location)}: the {self._r} schema's fixed "
                f"'{r['name']}' has size {r['size']}, the {self._w} schema's {w['size']}"
            ]
        if r_kind == "array":
            return self.compare(r["items"], w["items"], f"{location}[]")
        if r_kind == "map":
            return self.compare(r["values"], w["values"], f"{location}{{}}")
        return []

    def _union(self, reader: list[Any], writer: Any, location: str) -> list[str]:
        branches = [_resolve(b, self._r_named) for b in reader]
        w_kind = _kind(writer)
        # A branch of the same name (named types) or kind (others) is the one the reader picks.
        same = [
            b
            for b in branches
            if _kind(b) == w_kind and (w_kind not in _NAMED or _names_match(b, writer))
        ]
        if same:
            return self.compare(same[0], writer, location)
        if any(not self.compare(b, writer, location) for b in branches):
            return []
        return [
            f"MISSING_UNION_BRANCH: {_where(location)}: the {self._r} schema's union has no "
            f"branch that can read the {self._w} schema's type '{_describe(writer)}'"
        ]

    def _record(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], location: str
    ) -> list[str]:
        key = (str(reader["name"]), str(writer["name"]))
        if key in self._active:
            return []
        self._active.add(key)
        try:
            w_fields = {f["name"]: f for f in writer["fields"]}
            messages: list[str] = []
            for r_field in reader["fields"]:
                here = _join(location, r_field["name"])
                w_field = w_fields.get(r_field["name"])
                for alias in r_field.get("aliases") or ():
                    w_field = w_field or w_fields.get(alias)
                if w_field is not None:
                    messages.extend(self.compare(r_field["type"], w_field["type"], here))
                elif "default" not in r_field:
                    messages.append(
                        f"READER_FIELD_MISSING_DEFAULT_VALUE: field '{here}' in the {self._r} "
                        f"schema has no default value and is missing in the {self._w} schema"
                    )
            return messages
        finally:
            self._active.discard(key)

    def _enum(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], location: str
    ) -> list[str]:
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if not missing or reader.get("default") in reader["symbols"]:
            return []
        return [
            f"MISSING_ENUM_SYMBOLS: {_where(location)}: the {self._r} schema's enum "
            f"'{reader['name']}' lacks symbols {missing} of the {self._w} schema and has no default"
        ]


def reader_incompatibilities(
    reader: ParsedSchema,
    writer: ParsedSchema,
    reader_label: str = "reader",
    writer_label: str = "writer",
) -> list[str]:
    """List why ``reader`` cannot decode data written with ``writer`` (empty if it can).

    Args:
        reader: The schema decoding the data.
        writer: The schema the data was encoded with.
        reader_label: How messages name the reader schema ("new", "old", ...).
        writer_label: How messages name the writer schema.

    Returns:
        One message per incompatibility, each starting with an Avro error type and naming the field.

    """
    return _Resolution(reader, writer, reader_label, writer_label).compare(
        reader.root, writer.root, ""
    )


def incompatibilities(
    new: ParsedSchema, olds: Iterable[ParsedSchema], level: Compatibility
) -> list[str]:
    """List why ``new`` may not follow ``olds`` under ``level`` (empty if it may).

    Args:
        new: The candidate schema.
        olds: The earlier schemas to check against (the caller picks latest or all).
        level: Which directions to check; ``NONE`` accepts anything.

    Returns:
        The messages of every failed direction against every old schema.

    """
    messages: list[str] = []
    for old in olds:
        if level.backward:
            messages.extend(reader_incompatibilities(new, old, "new", "old"))
        if level.forward:
            messages.extend(reader_incompatibilities(old, new, "old", "new"))
    return messages


def check_avro_compatibility(
    new_schema: str, old_schema: str, level: str = Compatibility.BACKWARD
) -> list[str]:
    """Check two Avro schema texts against each other; a pure convenience over the parsed API.

    Args:
        new_schema: The candidate schema text.
        old_schema: The earlier schema text.
        level: A compatibility level name (case-insensitive); transitivity is moot for one pair.

    Returns:
        The incompatibility messages; empty means compatible.

    Raises:
        SchemaError: Either text is not a valid Avro schema.
        ValueError: ``level`` is not a compatibility level.

    """
    return incompatibilities(
        parse_avro(new_schema), [parse_avro(old_schema)], Compatibility(level.upper())
    )
