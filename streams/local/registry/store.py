"""The registry's state: subjects, versions, global schema ids and compatibility levels."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from streams.local.registry.compat import (
    incompatibilities,
)
from streams.local.registry.model import (
    AVRO,
    DEFAULT_COMPATIBILITY,
    RegistryError,
    SchemaReference,
    StoredSchema,
    SubjectVersion,
    _identity,
    _schema_not_found,
    _Subject,
    _subject_not_found,
    _Version,
    parse_level,
    parse_version,
)
from streams.local.registry.state import RegistryState

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


class Registry(RegistryState):
    """In-memory, thread-safe schema store with Confluent Schema Registry semantics.

    Schema ids are global: the same schema (same canonical JSON, type and references) gets the
    same id under every subject. Only Avro is supported. With ``data_file`` the state is loaded
    at construction and rewritten (atomically) after every change.
    """

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
