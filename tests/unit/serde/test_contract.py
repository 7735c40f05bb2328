"""The record contract: one table, agreeing with domain.md §1, the .avsc files and Settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from streams.errors import LeadstreamError
from streams.serde import contract
from streams.serde.avro import load_schemas, packaged_schemas
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = REPO / "schemas"
PACKAGED = REPO / "streams" / "serde" / "schemas"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


# --- the table ---------------------------------------------------------------------------------


def test_the_table_is_domain_md_section_1() -> None:
    s = Settings()
    rows = [(r.topic(s), r.key_fields, r.name, r.role) for r in contract.RECORDS]
    assert rows == [
        ("leads.form-submitted", ("lead_id",), "FormSubmitted", "input"),
        ("leads.booking-created", ("lead_id", "booking_id"), "BookingCreated", "input"),
        ("crm.lead-status-changed", ("lead_id",), "LeadStatusChanged", "input"),
        ("leadstream.conversions", ("lead_id",), "Conversion", "output"),
        ("leadstream.deliveries", ("event_id",), "DeliveryReceipt", "output"),
        ("leadstream.dead-letter", (), "DeadLetter", "output"),  # key: the source record's
    ]
    assert contract.INPUTS == (
        contract.FORM_SUBMITTED,
        contract.BOOKING_CREATED,
        contract.LEAD_STATUS_CHANGED,
    )


@pytest.mark.parametrize("rec", contract.RECORDS, ids=lambda r: r.name)
def test_each_record_names_its_schema_file_and_a_topic_setting(rec: contract.Record) -> None:
    schema = json.loads((SCHEMAS / rec.schema_file).read_text(encoding="utf-8"))
    assert schema["name"] == rec.name
    assert rec.topic_setting in Settings.model_fields
    assert rec.topic_setting.startswith("topic_")
    fields = {f["name"] for f in schema["fields"]}
    assert set(rec.key_fields) <= fields


def test_every_avsc_file_belongs_to_one_record() -> None:
    on_disk = sorted(p.name for p in SCHEMAS.glob("*.avsc"))
    assert on_disk == sorted(r.schema_file for r in contract.RECORDS)
    assert len({r.name for r in contract.RECORDS}) == len(contract.RECORDS)


def test_topics_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED", "hubspot.stages")
    monkeypatch.setenv("LEADSTREAM_TOPIC_DEAD_LETTER", "dlq")
    s = Settings()

    assert contract.topics_by_record(s, contract.INPUTS) == {
        "FormSubmitted": "leads.form-submitted",
        "BookingCreated": "leads.booking-created",
        "LeadStatusChanged": "hubspot.stages",
    }
    by_topic = contract.records_by_topic(s)
    assert by_topic["hubspot.stages"] is contract.LEAD_STATUS_CHANGED
    assert by_topic["dlq"] is contract.DEAD_LETTER
    assert "crm.lead-status-changed" not in by_topic


def test_record_by_name() -> None:
    assert contract.record("BookingCreated") is contract.BOOKING_CREATED
    assert contract.find("Nope") is None
    with pytest.raises(LeadstreamError) as info:
        contract.record("Nope")
    assert str(info.value) == (
        "no record is called 'Nope' (known: FormSubmitted, BookingCreated, LeadStatusChanged, "
        "Conversion, DeliveryReceipt, DeadLetter)"
    )


# --- record_key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_name", "record", "key"),
    [
        ("FormSubmitted", {"lead_id": "lead-1", "event_id": "e1"}, b"lead-1"),
        ("LeadStatusChanged", {"lead_id": "lead-2", "change_id": "c1"}, b"lead-2"),
        ("BookingCreated", {"lead_id": "lead-3", "booking_id": "bk-3"}, b"lead-3"),
        ("BookingCreated", {"lead_id": None, "booking_id": "bk-4"}, b"bk-4"),
        ("BookingCreated", {"booking_id": "bk-5"}, b"bk-5"),
        ("BookingCreated", {"lead_id": "", "booking_id": "bk-6"}, b"bk-6"),
        ("Conversion", {"lead_id": "lead-7", "event_id": "x"}, b"lead-7"),
        ("DeliveryReceipt", {"lead_id": "lead-8", "event_id": "evt-8"}, b"evt-8"),
        ("DeadLetter", {"source_key": b"k", "event_id": "evt-9"}, None),
        ("FormSubmitted", {"event_id": "e1"}, None),
        ("Unknown", {"lead_id": "lead-9"}, None),
        ("FormSubmitted", {"lead_id": "léad"}, "léad".encode()),
    ],
)
def test_record_key(record_name: str, record: dict[str, object], key: bytes | None) -> None:
    assert contract.record_key(record_name, record) == key


# --- the schemas shipped in the package --------------------------------------------------------


def test_the_packaged_schemas_are_byte_copies_of_schemas_dir() -> None:
    """``streams/serde/schemas/`` ships ``schemas/``; after an .avsc edit run ``make schemas``."""
    packaged = {p.name: p.read_bytes() for p in PACKAGED.glob("*.avsc")}
    source = {p.name: p.read_bytes() for p in SCHEMAS.glob("*.avsc")}
    stale = sorted(n for n in source.keys() | packaged.keys() if source.get(n) != packaged.get(n))
    assert not stale, f"streams/serde/schemas/ differs from schemas/ in {stale}: run make schemas"


def test_the_package_declares_its_schemas_as_package_data() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    assert "schemas/*.avsc" in package_data["streams.serde"]


def test_default_loading_reads_the_packaged_copies() -> None:
    assert Path(str(packaged_schemas())) == PACKAGED
    texts = load_schemas()
    assert texts == {
        r.name: (SCHEMAS / r.schema_file).read_text(encoding="utf-8") for r in contract.RECORDS
    }


def test_schema_dir_overrides_the_packaged_copies(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS, tmp_path, dirs_exist_ok=True)
    changed = json.loads((SCHEMAS / "dead_letter.avsc").read_text(encoding="utf-8"))
    changed["doc"] = "from the override folder"
    (tmp_path / "dead_letter.avsc").write_text(json.dumps(changed), encoding="utf-8")

    assert json.loads(load_schemas(tmp_path)["DeadLetter"])["doc"] == "from the override folder"
    assert json.loads(load_schemas()["DeadLetter"])["doc"] != "from the override folder"


def test_schemas_load_from_a_zipped_package_without_a_schema_folder(tmp_path: Path) -> None:
    """Installed elsewhere (here: imported from a zip, far from the repository) it needs no dir.

    ``importlib.resources`` reads the files through the package's loader, so this also holds for
    a wheel, a zipapp or any other non-filesystem install.
    """
    archive = tmp_path / "leadstream.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((REPO / "streams").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(REPO).as_posix())
    code = (
        "import streams, sys\n"
        "from streams.serde.avro import load_schemas\n"
        "assert streams.__file__.startswith(sys.argv[1]), streams.__file__\n"
        "print(sorted(load_schemas()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}
    env["PYTHONPATH"] = str(archive)
    result = subprocess.run(
        [sys.executable, "-c", code, str(archive)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sorted(r.name for r in contract.RECORDS))


def test_a_missing_packaged_schema_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.serde.avro as avro

    empty = Path(str(packaged_schemas())).parent / "no-such-folder"
    monkeypatch.setattr(avro, "packaged_schemas", lambda: empty)
    with pytest.raises(LeadstreamError) as info:
        load_schemas()
    assert str(info.value).startswith(
        f"cannot read schema FormSubmitted from the package ({empty / 'form_submitted.avsc'}): "
    )
    assert str(info.value).endswith("(reinstall leadstream, or set LEADSTREAM_SCHEMA_DIR)")
