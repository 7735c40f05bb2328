"""Exit codes of every command (README "Command line", domain.md §10), table by table.

0 ok, 1 failure, 2 usage or configuration error; every error one line, never a traceback. The
usage table runs argparse for each command, the configuration table gives each command one
setting or option it cannot use, and the failure table makes each command's work fail after a
good start (Kafka, the registry or the local stack failing), which is 1, not 2.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.errors import BrokerError, LeadstreamError
from streams.ops import cli
from streams.ops.lag import PartitionLag
from streams.ops.produce import ProduceReport

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    """A port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _error_line(err: str, prog: str = "leadstream") -> str:
    """The one error line (argparse prints its usage before it); no traceback."""
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"{prog}: error: "), err
    return line


# --- usage: argparse, exit 2 ------------------------------------------------------------------

USAGE = [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["worker", "--loglevel"], "expected one argument"),
    (["worker", "--nope"], "unrecognized arguments: --nope"),
    (["demo", "--timeout", "soon"], "invalid float value: 'soon'"),
    (["produce", "leads.form-submitted"], "the following arguments are required: file"),
    (["lag", "--max-lag", "-1"], "expected a non-negative integer, got '-1'"),
    (["lag", "--max-lag", "many"], "expected a non-negative integer, got 'many'"),
    (["dead-letters", "--source", "leads:1"], "expected topic:partition:offset, got 'leads:1'"),
    (["dead-letters", "--redrive", "all"], "unrecognized arguments: all"),
    (["report", "--html"], "expected one argument"),
    (["sandbox", "--port", "99999"], "expected a TCP port from 0 to 65535, got '99999'"),
    (["sandbox", "--log-level", "loud"], "expected DEBUG, INFO, WARNING or ERROR, got 'loud'"),
    (["registry", "--port", "http"], "expected a TCP port from 0 to 65535, got 'http'"),
    (["registry", "--tls-key", "key.pem"], "--tls-key needs --tls-cert"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE, ids=[" ".join(a) or "-" for a, _ in USAGE])
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)

    assert info.value.code == 2
    err = capsys.readouterr().err
    # argparse names the parser that refused it: "leadstream" or "leadstream <command>"
    command = argv[0] if argv else ""
    prog = f"leadstream {command}" if f"leadstream {command}: error: " in err else "leadstream"
    assert message in _error_line(err, prog)


# --- configuration: exit 2, one line naming the setting or option -----------------------------


def _jsonl(tmp_path: Path) -> str:
    data = tmp_path / "x.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    return str(data)


# (argv, environment, start of the line after "leadstream: error: ")
CONFIG: list[tuple[Callable[[Path, int], list[str]], dict[str, str], str]] = [
    (lambda tmp, port: ["worker"], {}, "LEADSTREAM_TIKTOK_ACCESS_TOKEN is not set"),
    (
        lambda tmp, port: ["worker"],
        {
            "LEADSTREAM_TIKTOK_ACCESS_TOKEN": "t",
            "LEADSTREAM_TIKTOK_PIXEL_CODE": "P",
            "LEADSTREAM_SCHEMA_REGISTRY_URL": "registry:8081",
        },
        "LEADSTREAM_SCHEMA_REGISTRY_URL: Invalid url registry:8081",
    ),
    (lambda tmp, port: ["produce", "some.topic", _jsonl(tmp)], {}, "no schema is known for topic"),
    (
        lambda tmp, port: ["produce", "some.topic", _jsonl(tmp), "--record", "Lead"],
        {},
        "no record is called 'Lead' (known: ",
    ),
    (
        lambda tmp, port: ["produce", "leads.form-submitted", str(tmp)],
        {},
        "no such file: ",
    ),
    (
        lambda tmp, port: ["produce", "leads.form-submitted", _jsonl(tmp)],
        {"LEADSTREAM_SCHEMA_REGISTRY_URL": "not a url"},
        "LEADSTREAM_SCHEMA_REGISTRY_URL: ",
    ),
    (
        lambda tmp, port: ["lag"],
        {"LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
        "LEADSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs",
    ),
    (lambda tmp, port: ["lag"], {"LEADSTREAM_WEB_PORT": "http"}, "LEADSTREAM_WEB_PORT: "),
    (
        lambda tmp, port: ["dead-letters"],
        {"LEADSTREAM_SCHEMA_REGISTRY_URL": "ftp://registry"},
        "LEADSTREAM_SCHEMA_REGISTRY_URL: ",
    ),
    (
        lambda tmp, port: ["dead-letters"],
        {"LEADSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:9", "LEADSTREAM_KAFKA_CONNECT_TIMEOUT": "1"},
        "cannot reach the broker 127.0.0.1:9: check LEADSTREAM_KAFKA_BOOTSTRAP",
    ),
    (lambda tmp, port: ["report", "--since", "soon"], {}, "--since/--until: 'soon'"),
    (
        lambda tmp, port: ["report"],
        {"LEADSTREAM_SCHEMA_REGISTRY_URL": "registry"},
        "LEADSTREAM_SCHEMA_REGISTRY_URL: ",
    ),
]


@pytest.mark.parametrize(
    ("argv", "env", "start"), CONFIG, ids=[f"{i}-{c[2][:30]}" for i, c in enumerate(CONFIG)]
)
def test_configuration_errors_exit_2_in_one_line(
    argv: Callable[[Path, int], list[str]],
    env: dict[str, str],
    start: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    busy_port: int,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert cli.main(argv(tmp_path, busy_port)) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert _error_line(err).startswith(f"leadstream: error: {start}")


@pytest.mark.parametrize(
    ("command", "args", "start"),
    [
        ("sandbox", ["--port", "{busy}"], "--host 127.0.0.1 --port {busy}: cannot listen: "),
        ("sandbox", ["--host", "no-such-host.invalid"], "--host no-such-host.invalid --port 0"),
        ("registry", ["--port", "{busy}"], "--host 127.0.0.1 --port {busy}: cannot listen: "),
        ("registry", ["--data", "{tmp}/no/such/folder/r.json"], "--data {tmp}/no/such/folder"),
        ("registry", ["--basic-auth-file", "{tmp}/missing"], "--basic-auth-file: cannot read"),
        ("registry", ["--tls-cert", "{tmp}"], "--tls-cert/--tls-key: cannot load"),
    ],
)
def test_local_servers_that_cannot_start_with_their_options_exit_2_in_one_line(
    command: str,
    args: list[str],
    start: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    busy_port: int,
) -> None:
    def fill(text: str) -> str:
        return text.format(busy=busy_port, tmp=tmp_path)

    if command == "sandbox" and "--port" not in args:
        args = [*args, "--port", "0"]
    if command == "registry" and "--port" not in args:
        args = [*args, "--port", "0"]

    with pytest.raises(SystemExit) as info:
        cli.main([command, *map(fill, args)])

    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert _error_line(err, f"leadstream {command}").startswith(
        f"leadstream {command}: error: {fill(start)}"
    )


# --- failures after a good start: exit 1, one line --------------------------------------------


def _raise(exc: BaseException) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fail


class FailingWorker:
    def __init__(self, settings: object) -> None:
        pass

    def prepare(self) -> None:
        msg = "registering FormSubmitted for topic leads.form-submitted failed: 409 Conflict"
        raise LeadstreamError(msg)


def _lagging(*args: Any, **kwargs: Any) -> list[PartitionLag]:
    return [PartitionLag("g", "leads", 0, 10, 15, 5, 12.0)]


WORKER_ENV = {"LEADSTREAM_TIKTOK_ACCESS_TOKEN": "t", "LEADSTREAM_TIKTOK_PIXEL_CODE": "P"}
TIMEOUT = KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out"))

# (argv, what fails: (module attribute, replacement), environment, start of the line)
FAILURES: list[tuple[list[str], tuple[str, Any], dict[str, str], str]] = [
    (
        ["worker"],
        ("streams.runtime.worker.Worker", FailingWorker),
        WORKER_ENV,
        "registering FormSubmitted for topic leads.form-submitted failed",
    ),
    (
        ["produce", "leads.form-submitted", "-"],
        (
            "streams.ops.produce.produce_lines",
            _raise(LeadstreamError("2 records were not acknowledged by Kafka")),
        ),
        {},
        "2 records were not acknowledged by Kafka",
    ),
    (
        ["produce", "leads.form-submitted", "-"],
        ("streams.ops.produce.produce_lines", lambda *a, **k: ProduceReport(3, 1)),
        {},
        "",  # the bad line was reported by number; the status says some failed
    ),
    (["lag", "--max-lag", "2"], ("streams.ops.lag.measure_lag", _lagging), {}, ""),
    (
        ["lag"],
        ("streams.ops.lag.measure_lag", _raise(BrokerError("cannot read committed offsets"))),
        {},
        "cannot read committed offsets",
    ),
    (
        ["lag"],
        ("streams.ops.lag.measure_lag", _raise(TIMEOUT)),
        {},
        "lag failed: KafkaException: ",
    ),
    (
        ["dead-letters"],
        (
            "streams.ops.deadletters.read_dead_letters",
            _raise(LeadstreamError("Broker: Not leader for partition")),
        ),
        {},
        "Broker: Not leader for partition",
    ),
    (
        ["dead-letters", "--json"],
        ("streams.ops.deadletters.read_dead_letters", _raise(OSError(28, "No space left"))),
        {},
        "dead-letters failed: OSError: [Errno 28] No space left",
    ),
    (
        ["report"],
        (
            "streams.ops.report.run.read_history",
            _raise(LeadstreamError("partition 0 of leads stopped answering")),
        ),
        {},
        "partition 0 of leads stopped answering",
    ),
    (
        ["demo"],
        ("streams.local.demo.run_demo", _raise(BrokerError("local broker did not start"))),
        {},
        "local broker did not start",
    ),
    (
        ["demo"],
        ("streams.local.demo.run_demo", _raise(TimeoutError("worker not ready within 90s"))),
        {},
        "demo failed: TimeoutError: worker not ready within 90s",
    ),
]


@pytest.mark.parametrize(
    ("argv", "failing", "env", "start"),
    FAILURES,
    ids=[f"{i}-{' '.join(f[0])}" for i, f in enumerate(FAILURES)],
)
def test_failures_after_a_good_start_exit_1_in_one_line(
    argv: list[str],
    failing: tuple[str, Any],
    env: dict[str, str],
    start: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "_preflight", lambda settings: None)  # Kafka answers
    monkeypatch.setattr(*failing)

    assert cli.main(argv) == 1

    err = capsys.readouterr().err
    assert "Traceback" not in err
    if start:
        assert err.count("\n") == 1
        assert _error_line(err).startswith(f"leadstream: error: {start}")
    else:
        assert "leadstream: error:" not in err


# --- the module entry points exit the same way ------------------------------------------------


@pytest.mark.parametrize(
    ("module", "args", "code"),
    [
        ("streams", ["produce"], 2),
        ("streams", ["--version"], 0),
        ("streams.local.sandbox", ["--port", "99999"], 2),
        ("streams.local.registry", ["--tls-key", "key.pem"], 2),
        ("streams.local.broker", [], 2),
        ("streams.local.broker", ["fetch", "twice"], 2),
        ("streams.local.broker", ["--help"], 0),
    ],
)
def test_python_dash_m_entry_points(module: str, args: list[str], code: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    if code:
        assert result.stderr.strip().splitlines()[-1].split(": error: ")[1]
