"""The registry's values: errors, stored schemas, subject versions, level and version parsing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.local.registry.compat import (
    Compatibility,
)

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
