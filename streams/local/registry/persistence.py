"""The registry's data file: a JSON snapshot of schemas, subjects and levels, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.local.registry.compat import Compatibility
from streams.local.registry.model import (
    _FORMAT,
    AVRO,
    SchemaReference,
    StoredSchema,
    _Subject,
    _Version,
    parse_level,
)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A data file's content; schemas carry no guid yet (it needs a parse with references)."""

    compatibility: Compatibility
    next_id: int
    schemas: dict[int, StoredSchema]
    subjects: dict[str, _Subject]


def snapshot(
    compatibility: Compatibility,
    next_id: int,
    schemas: Mapping[int, StoredSchema],
    subjects: Mapping[str, _Subject],
) -> dict[str, Any]:
    """Return the registry's state as the data file's JSON object."""
    return {
        "format": _FORMAT,
        "compatibility": compatibility.value,
        "next_id": next_id,
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
            for s in schemas.values()
        ],
        "subjects": {
            name: {
                "compatibility": state.compatibility.value if state.compatibility else None,
                "versions": [
                    {"version": v.version, "id": v.schema_id, "deleted": v.deleted}
                    for v in state.versions
                ],
            }
            for name, state in subjects.items()
        },
    }


def write(path: Path, data: Mapping[str, Any]) -> None:
    """Write-then-rename, so a crash mid-write never leaves a truncated file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path) -> Loaded:
    """Read a data file (``ValueError`` for another format)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != _FORMAT:
        msg = f"{path}: unsupported registry data format {data.get('format')!r}"
        raise ValueError(msg)
    schemas: dict[int, StoredSchema] = {}
    for item in sorted(data["schemas"], key=lambda s: int(s["id"])):
        references = tuple(SchemaReference(**r) for r in item.get("references", []))
        schema_type = item.get("schemaType", AVRO)
        schemas[int(item["id"])] = StoredSchema(
            int(item["id"]), item["schema"], schema_type, references, ""
        )
    subjects = {}
    for name, state in data["subjects"].items():
        level = state.get("compatibility")
        subjects[name] = _Subject(
            versions=[
                _Version(int(v["version"]), int(v["id"]), bool(v["deleted"]))
                for v in state["versions"]
            ],
            compatibility=parse_level(level) if level else None,
        )
    return Loaded(
        parse_level(data["compatibility"]), int(data.get("next_id", 1)), schemas, subjects
    )
