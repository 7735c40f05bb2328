"""The registry's data and the internals its operations share: lookups, parsing, the data file."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path

from streams.local.registry import persistence
from streams.local.registry.compat import (
    Compatibility,
    ParsedSchema,
    SchemaError,
    parse_avro,
)
from streams.local.registry.model import (
    _GUID_NAMESPACE,
    AVRO,
    DEFAULT_COMPATIBILITY,
    RegistryError,
    SchemaReference,
    StoredSchema,
    SubjectVersion,
    _identity,
    _invalid_schema,
    _Subject,
    _subject_not_found,
    _Version,
    _version_not_found,
    parse_version,
)

logger = logging.getLogger(__name__)


class RegistryState:
    """Subjects, versions, global schema ids and levels, guarded by one lock (no public API)."""

    def __init__(self, data_file: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.RLock()
        self._data_file = Path(data_file) if data_file is not None else None
        self._schemas: dict[int, StoredSchema] = {}
        self._ids: dict[str, int] = {}
        self._guids: dict[str, int] = {}
        self._parsed: dict[int, ParsedSchema] = {}
        self._subjects: dict[str, _Subject] = {}
        self._compatibility = DEFAULT_COMPATIBILITY
        self._next_id = 1
        if self._data_file is not None and self._data_file.exists():
            self._load(self._data_file)

    # ---- internals -----------------------------------------------------------------------------

    def _level(self, subject: str) -> Compatibility:
        state = self._subjects.get(subject)
        if state is not None and state.compatibility is not None:
            return state.compatibility
        return self._compatibility

    def _versions_of(self, subject: str, deleted: bool) -> list[_Version]:
        state = self._subjects.get(subject)
        found = [] if state is None else (state.versions if deleted else state.live())
        if not found:
            raise _subject_not_found(subject)
        return found

    def _find(self, subject: str, version: int | str, deleted: bool) -> _Version:
        number = parse_version(version)
        candidates = self._versions_of(subject, deleted)
        if number is None:
            return candidates[-1]
        for v in candidates:
            if v.version == number:
                return v
        raise _version_not_found(subject, number)

    def _view(self, subject: str, entry: _Version) -> SubjectVersion:
        stored = self._schemas[entry.schema_id]
        return SubjectVersion(
            subject=subject,
            version=entry.version,
            schema_id=entry.schema_id,
            schema=stored.schema,
            schema_type=stored.schema_type,
            references=stored.references,
            guid=stored.guid,
            deleted=entry.deleted,
        )

    def _parse(
        self, schema_str: str, schema_type: str, references: tuple[SchemaReference, ...]
    ) -> ParsedSchema:
        if (schema_type or AVRO).upper() != AVRO:
            msg = f"Unsupported schema type '{schema_type}'; only AVRO is served"
            raise _invalid_schema(msg)
        if not isinstance(schema_str, str) or not schema_str.strip():
            msg = "Empty schema"
            raise _invalid_schema(msg)
        try:
            return parse_avro(schema_str, self._reference_texts(references))
        except SchemaError as exc:
            raise _invalid_schema(str(exc)) from None

    def _reference_texts(self, references: Iterable[SchemaReference]) -> list[str]:
        """Texts of the referenced schemas and their own references, dependencies first."""
        texts: list[str] = []
        seen: set[int] = set()

        def visit(refs: Iterable[SchemaReference]) -> None:
            for ref in refs:
                try:
                    entry = self._find(ref.subject, ref.version, deleted=True)
                except RegistryError:
                    msg = f"Invalid schema: reference {ref.name!r} to {ref.subject} "
                    msg += f"version {ref.version} not found"
                    raise _invalid_schema(msg) from None
                if entry.schema_id in seen:
                    continue
                seen.add(entry.schema_id)
                stored = self._schemas[entry.schema_id]
                visit(stored.references)
                texts.append(stored.schema)

        visit(references)
        return texts

    def _parsed_of(self, schema_id: int) -> ParsedSchema:
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            stored = self._schemas[schema_id]
            parsed = parse_avro(stored.schema, self._reference_texts(stored.references))
            self._parsed[schema_id] = parsed
        return parsed

    def _add_schema(
        self,
        parsed: ParsedSchema,
        schema_type: str,
        references: tuple[SchemaReference, ...],
        identity: str,
    ) -> int:
        schema_id = self._next_id
        self._next_id += 1
        guid = str(uuid.uuid5(_GUID_NAMESPACE, identity))
        self._schemas[schema_id] = StoredSchema(
            schema_id, parsed.text, schema_type.upper(), references, guid
        )
        self._ids[identity] = schema_id
        self._guids[guid] = schema_id
        self._parsed[schema_id] = parsed
        return schema_id

    # ---- persistence ---------------------------------------------------------------------------

    def _save(self) -> None:
        if self._data_file is not None:
            persistence.write(
                self._data_file,
                persistence.snapshot(
                    self._compatibility, self._next_id, self._schemas, self._subjects
                ),
            )

    def _load(self, path: Path) -> None:
        loaded = persistence.read(path)
        self._compatibility = loaded.compatibility
        self._schemas = loaded.schemas
        self._subjects = loaded.subjects
        # The identity needs a parse, which needs the referenced subjects loaded above.
        for schema_id, stored in sorted(self._schemas.items()):
            parsed = self._parsed_of(schema_id)
            identity = _identity(parsed.canonical, stored.schema_type, stored.references)
            guid = str(uuid.uuid5(_GUID_NAMESPACE, identity))
            self._schemas[schema_id] = StoredSchema(
                schema_id, stored.schema, stored.schema_type, stored.references, guid
            )
            self._ids[identity] = schema_id
            self._guids[guid] = schema_id
        self._next_id = max(loaded.next_id, max(self._schemas, default=0) + 1)
        logger.info(
            "loaded %d schemas and %d subjects from %s",
            len(self._schemas),
            len(self._subjects),
            path,
        )
