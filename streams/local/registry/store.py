"""The registry's state: subjects, versions, global schema ids and compatibility levels."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.local.registry.compat import (
    Compatibility,
    ParsedSchema,
    SchemaError,
    incompatibilities,
    parse_avro,
)

__all__ = [
    "AVRO",
    "DEFAULT_COMPATIBILITY",
    "Registry",
    "RegistryError",
    "SchemaReference",
    "StoredSchema",
    "SubjectVersion",
    "parse_level",
    "parse_version",
]

logger = logging.getLogger(__name__)

AVRO = "AVRO"
DEFAULT_COMPATIBILITY = Compatibility.BACKWARD
_FORMAT = 1
_GUID_NAMESPACE = uuid.UUID("6f1c2a9e-4c59-4d8e-9a54-6c0b3f1e2d7a")
_MAX_VERSION = 2**31 - 1


class RegistryError(Exception):
    """A request the registry refuses, carrying the Confluent HTTP status and error code.

    Attributes:
        status: The HTTP status the REST layer answers with.
        error_code: Confluent's error code (40401 subject not found, 42201 invalid schema, ...).
        message: Human-readable detail.

    """

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def _version_not_found(subject: str, version: int | str) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def _schema_not_found(what: object = None) -> RegistryError:
    detail = f" {what}" if what is not None else ""
    return RegistryError(404, 40403, f"Schema{detail} not found.")


def _invalid_schema(detail: str) -> RegistryError:
    return RegistryError(422, 42201, detail)


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """A named type imported from another subject's version."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class StoredSchema:
    """A schema under its global id."""

    schema_id: int
    schema: str
    schema_type: str
    references: tuple[SchemaReference, ...]
    guid: str


@dataclass(frozen=True, slots=True)
class SubjectVersion:
    """One version of a subject."""

    subject: str
    version: int
    schema_id: int
    schema: str
    schema_type: str = AVRO
    references: tuple[SchemaReference, ...] = ()
    guid: str = ""
    deleted: bool = False


@dataclass(slots=True)
class _Version:
    version: int
    schema_id: int
    deleted: bool = False


@dataclass(slots=True)
class _Subject:
    versions: list[_Version] = field(default_factory=list)
    compatibility: Compatibility | None = None

    def live(self) -> list[_Version]:
        return [v for v in self.versions if not v.deleted]


def _identity(canonical: str, schema_type: str, references: Sequence[SchemaReference]) -> str:
    refs = [[r.name, r.subject, r.version] for r in references]
    return json.dumps([schema_type, canonical, refs], separators=(",", ":"))


def parse_level(level: str) -> Compatibility:
    """Turn a level name (any case) into a :class:`Compatibility`.

    Args:
        level: e.g. ``"backward"`` or ``"FULL_TRANSITIVE"``.

    Returns:
        The level.

    Raises:
        RegistryError: 42203 if the name is not a level.

    """
    try:
        return Compatibility(str(level).upper())
    except ValueError:
        valid = ", ".join(c.value for c in Compatibility)
        msg = f"Invalid compatibility level '{level}'. Valid values are {valid}."
        raise RegistryError(422, 42203, msg) from None


def parse_version(version: int | str) -> int | None:
    """Turn a version path segment into a number, or ``None`` for the latest.

    Args:
        version: ``"latest"``, ``-1`` (also latest) or a number from 1 to 2^31-1.

    Returns:
        The version number, or ``None`` for latest.

    Raises:
        RegistryError: 42202 if it is not a valid version.

    """
    if isinstance(version, str) and version.strip().lower() == "latest":
        return None
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if number == -1:
        return None
    if not 1 <= number <= _MAX_VERSION:
        msg = (
            f"The specified version '{version}' is not a valid version id. Allowed values are "
            'between [1, 2^31-1] and the string "latest"'
        )
        raise RegistryError(422, 42202, msg)
    return number


class Registry:
    """In-memory, thread-safe schema store with Confluent Schema Registry semantics.

    Schema ids are global: the same schema (same canonical JSON, type and references) gets the
    same id under every subject. Only Avro is supported. With ``data_file`` the state is loaded
    at construction and rewritten (atomically) after every change.
    """

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

    # ---- schemas by id -------------------------------------------------------------------------

    def get_by_id(self, schema_id: int) -> str:
        """Return the schema text registered under a global id.

        Args:
            schema_id: The global schema id.

        Returns:
            The schema as compact JSON.

        Raises:
            RegistryError: 40403 if the id is unknown.

        """
        return self.schema(schema_id).schema

    def schema(self, schema_id: int) -> StoredSchema:
        """Return everything stored under a global id (40403 if unknown)."""
        with self._lock:
            try:
                return self._schemas[schema_id]
            except KeyError:
                raise _schema_not_found(schema_id) from None

    def schema_by_guid(self, guid: str) -> StoredSchema:
        """Return the schema with this guid (40403 if unknown)."""
        with self._lock:
            schema_id = self._guids.get(guid)
            if schema_id is None:
                raise _schema_not_found(guid)
            return self._schemas[schema_id]

    def schema_versions(self, schema_id: int, deleted: bool = False) -> list[tuple[str, int]]:
        """List the (subject, version) pairs that use a schema id (40403 if the id is unknown)."""
        with self._lock:
            self.schema(schema_id)
            return [
                (name, v.version)
                for name, subject in sorted(self._subjects.items())
                for v in subject.versions
                if v.schema_id == schema_id and (deleted or not v.deleted)
            ]

    # ---- subjects and versions -----------------------------------------------------------------

    def subjects(
        self, deleted: bool = False, deleted_only: bool = False, prefix: str = ""
    ) -> list[str]:
        """List subject names, sorted.

        Args:
            deleted: Include subjects whose versions are all soft-deleted.
            deleted_only: Only such subjects.
            prefix: Keep only names starting with it.

        Returns:
            The names.

        """
        with self._lock:
            names = []
            for name, subject in sorted(self._subjects.items()):
                if not name.startswith(prefix) or not subject.versions:
                    continue
                is_live = bool(subject.live())
                if (deleted_only and not is_live) or (not deleted_only and (is_live or deleted)):
                    names.append(name)
            return names

    def versions(self, subject: str, deleted: bool = False) -> list[int]:
        """List a subject's version numbers (40401 if it has none)."""
        with self._lock:
            return [v.version for v in self._versions_of(subject, deleted)]

    def get_version(
        self, subject: str, version: int | str = "latest", deleted: bool = False
    ) -> SubjectVersion:
        """Return one version of a subject.

        Args:
            subject: Subject name.
            version: A number, ``"latest"`` or ``-1``.
            deleted: Also find soft-deleted versions.

        Returns:
            The version.

        Raises:
            RegistryError: 40401 unknown subject, 40402 unknown version, 42202 invalid version.

        """
        with self._lock:
            return self._view(subject, self._find(subject, version, deleted))

    def latest(self, subject: str) -> tuple[int, int, str]:
        """Return ``(schema_id, version, schema)`` of a subject's latest live version.

        Raises:
            RegistryError: 40401 if the subject has no live version.

        """
        found = self.get_version(subject, "latest")
        return found.schema_id, found.version, found.schema

    def register(
        self,
        subject: str,
        schema_str: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
    ) -> int:
        """Register a schema under a subject and return its global id.

        Idempotent: a schema already live under the subject returns its id without a new version.

        Args:
            subject: Subject name.
            schema_str: The Avro schema as JSON text.
            schema_type: Only ``"AVRO"``.
            references: Named types imported from other subjects.

        Returns:
            The global schema id.

        Raises:
            RegistryError: 42201 invalid schema, 409 incompatible with the subject's level.

        """
        return self.register_version(subject, schema_str, schema_type, references).schema_id

    def register_version(
        self,
        subject: str,
        schema_str: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
    ) -> SubjectVersion:
        """Like :meth:`register` but return the whole subject version."""
        with self._lock:
            references = tuple(references)
            parsed = self._parse(schema_str, schema_type, references)
            identity = _identity(parsed.canonical, schema_type, references)
            state = self._subjects.get(subject)
            live = state.live() if state is not None else []
            existing_id = self._ids.get(identity)
            for v in reversed(live):
                if v.schema_id == existing_id:
                    return self._view(subject, v)
            level = self._level(subject)
            olds = live if level.transitive else live[-1:]
            messages = incompatibilities(
                parsed, [self._parsed_of(v.schema_id) for v in olds], level
            )
            if messages:
                msg = (
                    "Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}", details: [{"; ".join(messages)}]'
                )
                raise RegistryError(409, 409, msg)
            if existing_id is None:
                existing_id = self._add_schema(parsed, schema_type, references, identity)
            if state is None:
                state = self._subjects[subject] = _Subject()
            number = max((v.version for v in state.versions), default=0) + 1
            entry = _Version(number, existing_id)
            state.versions.append(entry)
            logger.debug("registered %s version %d as id %d", subject, number, existing_id)
            self._save()
            return self._view(subject, entry)

    def lookup(
        self,
        subject: str,
        schema_str: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
        deleted: bool = False,
    ) -> SubjectVersion:
        """Find the version of a subject holding this schema.

        Raises:
            RegistryError: 40401 unknown subject, 40403 schema not under it, 42201 invalid schema.

        """
        with self._lock:
            references = tuple(references)
            candidates = self._versions_of(subject, deleted)
            parsed = self._parse(schema_str, schema_type, references)
            schema_id = self._ids.get(_identity(parsed.canonical, schema_type, references))
            for v in reversed(candidates):
                if v.schema_id == schema_id:
                    return self._view(subject, v)
            raise _schema_not_found()

    def delete_subject(self, subject: str, permanent: bool = False) -> list[int]:
        """Soft-delete a subject (all its versions), or hard-delete an already soft-deleted one.

        Global ids stay resolvable after either delete, so old records still decode.

        Returns:
            The version numbers deleted.

        Raises:
            RegistryError: 40401 unknown subject, 40404 already soft-deleted (soft), 40405 not
                soft-deleted yet (permanent).

        """
        with self._lock:
            state = self._subjects.get(subject)
            if state is None or not state.versions:
                raise _subject_not_found(subject)
            live = state.live()
            if permanent:
                if live:
                    msg = (
                        f"Subject '{subject}' was not deleted first before being permanently "
                        "deleted"
                    )
                    raise RegistryError(404, 40405, msg)
                numbers = [v.version for v in state.versions]
                del self._subjects[subject]
            else:
                if not live:
                    msg = (
                        f"Subject '{subject}' was soft deleted. "
                        "Set permanent=true to delete permanently"
                    )
                    raise RegistryError(404, 40404, msg)
                numbers = [v.version for v in live]
                for v in live:
                    v.deleted = True
                state.compatibility = None
            self._save()
            return numbers

    def delete_version(self, subject: str, version: int | str, permanent: bool = False) -> int:
        """Soft-delete one version, or hard-delete an already soft-deleted one.

        Returns:
            The version number deleted.

        Raises:
            RegistryError: 40401, 40402, 42202, or 40407 if a hard delete was not preceded by a
                soft delete.

        """
        with self._lock:
            entry = self._find(subject, version, deleted=permanent)
            state = self._subjects[subject]
            if permanent:
                if not entry.deleted:
                    msg = (
                        f"Subject '{subject}' Version {entry.version} was not deleted first "
                        "before being permanently deleted"
                    )
                    raise RegistryError(404, 40407, msg)
                state.versions.remove(entry)
                if not state.versions:
                    del self._subjects[subject]
            else:
                entry.deleted = True
            self._save()
            return entry.version

    def referenced_by(self, subject: str, version: int | str = "latest") -> list[int]:
        """List ids of live schemas that reference this subject version."""
        with self._lock:
            entry = self._find(subject, version, deleted=False)
            live_ids = {v.schema_id for s in self._subjects.values() for v in s.live()}
            return sorted(
                schema_id
                for schema_id in live_ids
                if any(
                    r.subject == subject and r.version == entry.version
                    for r in self._schemas[schema_id].references
                )
            )

    # ---- compatibility -------------------------------------------------------------------------

    def check_compatibility(
        self,
        subject: str,
        schema_str: str,
        version: int | str = "latest",
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
    ) -> tuple[bool, list[str]]:
        """Check a candidate schema against one version under the subject's level.

        A subject with no live version accepts anything when ``version`` is latest.

        Returns:
            ``(is_compatible, messages)``; each message names the incompatible field.

        Raises:
            RegistryError: 42201 invalid schema, 40401/40402 unknown subject or version.

        """
        with self._lock:
            parsed = self._parse(schema_str, schema_type, tuple(references))
            number = parse_version(version)
            state = self._subjects.get(subject)
            if number is None and (state is None or not state.live()):
                return True, []
            entry = self._find(subject, version, deleted=False)
            messages = incompatibilities(
                parsed, [self._parsed_of(entry.schema_id)], self._level(subject)
            )
            return not messages, messages

    def check_compatibility_all(
        self,
        subject: str,
        schema_str: str,
        schema_type: str = AVRO,
        references: Sequence[SchemaReference] = (),
    ) -> tuple[bool, list[str]]:
        """Check a candidate as registration would: all live versions if transitive, else latest.

        Returns:
            ``(is_compatible, messages)``.

        """
        with self._lock:
            parsed = self._parse(schema_str, schema_type, tuple(references))
            state = self._subjects.get(subject)
            live = state.live() if state is not None else []
            level = self._level(subject)
            olds = live if level.transitive else live[-1:]
            messages = incompatibilities(
                parsed, [self._parsed_of(v.schema_id) for v in olds], level
            )
            return not messages, messages

    def get_compatibility(self, subject: str | None = None, default_to_global: bool = True) -> str:
        """Return the global level, or a subject's.

        Args:
            subject: ``None`` for the global level.
            default_to_global: For a subject without its own level, answer the global one
                instead of raising 40408.

        Returns:
            The level name.

        """
        with self._lock:
            if subject is None:
                return self._compatibility.value
            state = self._subjects.get(subject)
            if state is not None and state.compatibility is not None:
                return state.compatibility.value
            if default_to_global:
                return self._compatibility.value
            msg = f"Subject '{subject}' does not have subject-level compatibility configured"
            raise RegistryError(404, 40408, msg)

    def set_compatibility(self, level: str, subject: str | None = None) -> str:
        """Set the global level, or a subject's (42203 for an unknown level); return it."""
        parsed = parse_level(level)
        with self._lock:
            if subject is None:
                self._compatibility = parsed
            else:
                self._subjects.setdefault(subject, _Subject()).compatibility = parsed
            self._save()
            return parsed.value

    def delete_compatibility(self, subject: str | None = None) -> str:
        """Reset the global level to BACKWARD, or drop a subject's own; return the old level."""
        with self._lock:
            previous = self.get_compatibility(subject, default_to_global=False)
            if subject is None:
                self._compatibility = DEFAULT_COMPATIBILITY
            else:
                self._subjects[subject].compatibility = None
            self._save()
            return previous

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

    def _snapshot(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "compatibility": self._compatibility.value,
            "next_id": self._next_id,
            "schemas": [
                {
                    "id": s.schema_id,
                    "schema": s.schema,
                    "schemaType": s.schema_type,
                    "references": [
                        {"name": r.name, "subject": r.subject, "version": r.version}
                        for r in s.references
                    ],
                }
                for s in self._schemas.values()
            ],
            "subjects": {
                name: {
                    "compatibility": state.compatibility.value if state.compatibility else None,
                    "versions": [
                        {"version": v.version, "id": v.schema_id, "deleted": v.deleted}
                        for v in state.versions
                    ],
                }
                for name, state in self._subjects.items()
            },
        }

    def _save(self) -> None:
        if self._data_file is None:
            return
        path = self._data_file
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename so a crash mid-write never leaves a truncated file behind.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._snapshot(), fh, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT:
            msg = f"{path}: unsupported registry data format {data.get('format')!r}"
            raise ValueError(msg)
        self._compatibility = parse_level(data["compatibility"])
        for item in sorted(data["schemas"], key=lambda s: int(s["id"])):
            references = tuple(SchemaReference(**r) for r in item.get("references", []))
            schema_type = item.get("schemaType", AVRO)
            # The identity needs a parse, which needs referenced subjects: filled in below.
            self._schemas[int(item["id"])] = StoredSchema(
                int(item["id"]), item["schema"], schema_type, references, ""
            )
        for name, state in data["subjects"].items():
            level = state.get("compatibility")
            self._subjects[name] = _Subject(
                versions=[
                    _Version(int(v["version"]), int(v["id"]), bool(v["deleted"]))
                    for v in state["versions"]
                ],
                compatibility=parse_level(level) if level else None,
            )
        for schema_id, stored in sorted(self._schemas.items()):
            parsed = self._parsed_of(schema_id)
            identity = _identity(parsed.canonical, stored.schema_type, stored.references)
            guid = str(uuid.uuid5(_GUID_NAMESPACE, identity))
            self._schemas[schema_id] = StoredSchema(
                schema_id, stored.schema, stored.schema_type, stored.references, guid
            )
            self._ids[identity] = schema_id
            self._guids[guid] = schema_id
        self._next_id = max(int(data.get("next_id", 1)), max(self._schemas, default=0) + 1)
        logger.info(
            "loaded %d schemas and %d subjects from %s",
            len(self._schemas),
            len(self._subjects),
            path,
        )
