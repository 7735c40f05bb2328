"""The ``leadstream`` command line (also ``python -m streams``); see README "Command line"."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from pydantic import ValidationError

from streams.errors import ConfigError, LeadstreamError

logger = logging.getLogger("streams")

EXIT_FAILURE = 1  # it ran and failed: Kafka or the registry failed midway, bad input lines
EXIT_CONFIG = 2  # usage or configuration error (argparse's own status for a bad option)

DESCRIPTION = """\
Leadstream joins CRM lead status changes and bookings back to the original TikTok ad click and
sends qualified-lead (ApplicationApproval on the web, QualifiedLead on CRM event sets), Purchase
and Schedule conversions to the TikTok Events API, once each.
Configuration comes from LEADSTREAM_* environment variables (README, "Configuration")."""


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2"):  # the registry client logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(**overrides: object):  # type: ignore[no-untyped-def]  # returns Settings (lazy import)
    from streams.settings import load_settings

    return load_settings(**overrides)


def _preflight(settings) -> None:  # type: ignore[no-untyped-def]  # Settings (lazy import)
    """Fail fast, in one line, when Kafka cannot be reached with the configured connection."""
    from streams.connection import check_connection

    check_connection(settings.kafka_connection(), settings.kafka_connect_timeout)


def _serde(settings):  # type: ignore[no-untyped-def]  # Settings -> AvroSerde (lazy imports)
    """Return the Avro serde; a registry URL the client refuses is a configuration error."""
    from streams.serde.avro import AvroSerde

    try:
        return AvroSerde.from_settings(settings)
    except ValueError as exc:  # the registry client refuses a malformed URL this way
        msg = f"LEADSTREAM_SCHEMA_REGISTRY_URL: {exc}"
        raise ConfigError(msg) from None
    except ConfigError:
        raise
    except LeadstreamError as exc:  # nothing connects yet: the schema files cannot be read
        raise ConfigError(str(exc)) from None


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the Faust worker."""
    from streams.runtime.worker import Worker, check_settings

    settings = _settings()
    check_settings(settings)
    _serde(settings)  # a registry URL or schema folder it cannot use: exit 2, not a traceback
    _preflight(settings)  # before any client exists: one line, not librdkafka's retries
    worker = Worker(settings)
    worker.prepare()
    worker.run(loglevel=args.loglevel or settings.log_level)
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    """Produce JSON Lines to a topic."""
    from streams.ops.produce import numbered_lines, produce_lines, record_for_topic
    from streams.serde import contract

    settings = _settings()
    if args.record:  # one line naming the known records, not a KeyError while encoding
        try:
            record = contract.record(args.record).name
        except LeadstreamError as exc:  # a usage error: exit 2
            raise ConfigError(str(exc)) from None
    else:
        record = record_for_topic(settings, args.topic)
    path = None if args.file == "-" else Path(args.file)
    if path is not None and not path.is_file():
        msg = f"no such file: {path}"
        raise ConfigError(msg)
    serde = _serde(settings)
    with ExitStack() as files:
        source = sys.stdin
        if path is not None:
            try:
                source = files.enter_context(path.open(encoding="utf-8"))
            except OSError as exc:
                msg = f"cannot read {path}: {exc.strerror}"
                raise ConfigError(msg) from None
        _preflight(settings)
        conn = settings.kafka_connection()
        report = produce_lines(numbered_lines(source), args.topic, record, serde, conn, sys.stderr)
    print(
        f"produced {report.produced} {record} records to {args.topic}; {report.bad_lines} bad lines"
    )
    return 1 if report.bad_lines else 0


def _require_local_stack(command: str) -> None:
    """Exit 2 in one line, saying how to install it, when the ``[local]`` extra is missing."""
    from streams.local import require_local_stack

    require_local_stack(command)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the embedded demo."""
    _require_local_stack("demo")
    from streams.local.demo import run_demo

    return run_demo(keep_logs=args.keep_logs, timeout=args.timeout, meta=args.meta)


def cmd_sandbox(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the Events API sandbox."""
    _require_local_stack("sandbox")
    from streams.local.sandbox.server import main as sandbox_main

    return sandbox_main(list(rest))


def cmd_registry(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the schema registry double."""
    _require_local_stack("registry")
    from streams.local.registry.server import main as registry_main

    return registry_main(list(rest))


def cmd_lag(args: argparse.Namespace) -> int:
    """Report consumer lag."""
    from streams.ops.lag import run_lag

    settings = _settings()
    _preflight(settings)
    return run_lag(settings, group=args.group, as_json=args.json, max_lag=args.max_lag)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List, summarise or re-drive dead letters."""
    from streams.ops.deadletters import run_dead_letters

    settings = _settings()
    serde = _serde(settings)
    _preflight(settings)
    return run_dead_letters(
        settings,
        serde=serde,
        reasons=args.reason or [],
        source_topics=args.source_topic or [],
        sources=args.source or [],
        as_json_output=args.json,
        do_redrive=args.redrive,
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Print or write the lead-quality report."""
    from datetime import UTC, datetime

    from streams.ops.report.run import check_options, run_report

    check_options(args.since, args.until, args.html, datetime.now(tz=UTC))  # before connecting
    settings = _settings()
    serde = _serde(settings)
    _preflight(settings)
    return run_report(
        settings, since=args.since, until=args.until, as_json=args.json, html=args.html, serde=serde
    )


def _count(text: str) -> int:
    """Parse a non-negative integer option (argparse reports the error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"expected a non-negative integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


_SOURCE = re.compile(r".+:\d+:\d+")


def _source(text: str) -> str:
    """Check a ``--source`` is ``topic:partition:offset`` (argparse reports the error, exit 2)."""
    if not _SOURCE.fullmatch(text):
        msg = f"expected topic:partition:offset, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return text


def _version() -> str:
    """Return the installed package's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("leadstream")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="leadstream",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leadstream {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("worker", help="run the stream processor (Faust worker)")
    p.add_argument("--loglevel", help="log level (default: LEADSTREAM_LOG_LEVEL or INFO)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "demo",
        help="local broker + registry + Events API sandbox + worker, sample traffic, summary",
        description="Start everything locally, play sample traffic, print what was sent, "
        "deduplicated and dead-lettered. Needs no configuration and no network.",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the results")
    p.add_argument("--keep-logs", action="store_true", help="keep the worker and broker logs")
    p.add_argument(
        "--meta",
        action="store_true",
        help="also deliver to a local Meta Conversions API sandbox and show both destinations",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "produce",
        help="encode JSON Lines with the topic's schema and produce them",
        description="Encode each JSON line with the topic's Avro schema (Confluent wire format, "
        "schema registered under <topic>-value) and produce it keyed per the contract: "
        "lead_id, or booking_id for a booking without lead_id. Timestamps may be ISO 8601 "
        "strings or epoch milliseconds. A bad line is reported with its number and skipped; "
        "the exit status is 1 when any line was bad.",
    )
    p.add_argument("topic", help="topic name, e.g. crm.lead-status-changed")
    p.add_argument("file", help="JSON Lines file, or - for standard input")
    p.add_argument("--record", help="record name, when the topic is not one of the configured ones")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser(
        "sandbox",
        help="run the local TikTok Events API sandbox",
        add_help=False,
        description="Options are the sandbox's own; see 'leadstream sandbox --help'.",
    )
    p.set_defaults(func=cmd_sandbox, passthrough=True)

    p = sub.add_parser(
        "registry",
        help="run the local schema registry double",
        add_help=False,
        description="Options are the registry's own; see 'leadstream registry --help'.",
    )
    p.set_defaults(func=cmd_registry, passthrough=True)

    p = sub.add_parser(
        "lag",
        help="consumer lag per topic and partition, in offsets and seconds",
        description="Committed offset vs log end per partition, and the age of the oldest "
        "unconsumed record. Exits 1 when any partition lags more than --max-lag (2 is a usage or "
        "configuration error).",
    )
    p.add_argument("--group", help="consumer group (default: LEADSTREAM_APP_ID)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--max-lag",
        type=_count,
        help="exit 1 when a partition lags more records than this",
    )
    p.set_defaults(func=cmd_lag)

    p = sub.add_parser(
        "dead-letters",
        help="list and summarise the dead-letter topic, or re-drive records after a fix",
        description="Read LEADSTREAM_TOPIC_DEAD_LETTER from the earliest offset it retains and "
        "print counts by reason and one line per dead letter (or --json). With --redrive, "
        "produce the selected records' original bytes back to their source topics (PII in them "
        "is already hashed); the worker's dedup keeps a record re-driven twice from being sent "
        "twice. A live count shows on a terminal; the count read ends on standard error.",
    )
    p.add_argument("--reason", action="append", help="only this reason (repeatable)")
    p.add_argument("--source-topic", action="append", help="only records from this topic")
    p.add_argument(
        "--source",
        action="append",
        type=_source,
        help="only this record, as topic:partition:offset",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    p.add_argument("--redrive", action="store_true", help="re-drive the selected records")
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser(
        "report",
        help="the lead-quality report for a time range: funnel, timings, match keys, delivery",
        description="Read the input, conversions, deliveries and dead-letter topics for a time "
        "range (by record timestamp) and report, per event and route: forms -> qualified -> won, "
        "time from CRM change to acceptance and from form to qualification, match-key coverage, "
        "delivery outcomes and dead letters. Exits 2 for a bad option or connection, 1 when "
        "reading fails midway.",
    )
    p.add_argument(
        "--since", help="start: ISO 8601 time or a duration before now (7d, 36h, PT24H); default 7d"
    )
    p.add_argument("--until", help="end (exclusive): ISO 8601 time or duration; default now")
    p.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    p.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``leadstream`` command.

    Returns:
        The exit status: 0 ok, 1 failure, 2 usage or configuration error (argparse exits 2
        itself). Every error is one line on standard error, never a traceback.

    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if argv and argv[0] in ("sandbox", "registry"):  # their options are their own
            _configure_logging("INFO")
            func = cmd_sandbox if argv[0] == "sandbox" else cmd_registry
            return func(argparse.Namespace(func=None), argv[1:])
        args = parser.parse_args(argv)
        _configure_logging(getattr(args, "loglevel", None) or "INFO")
        return int(args.func(args))
    except ValidationError as exc:
        from streams.settings import describe_validation_error

        return _error(describe_validation_error(exc), EXIT_CONFIG)
    except ConfigError as exc:  # a setting or an option: the message names it
        return _error(str(exc), EXIT_CONFIG)
    except LeadstreamError as exc:  # it was configured right and failed while running
        return _error(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        logger.debug("%s failed", args.command, exc_info=True)
        return _error(f"{args.command} failed: {type(exc).__name__}: {exc}", EXIT_FAILURE)


def _error(message: str, code: int) -> int:
    """Print ``leadstream: error: <message>`` as one line on standard error; return ``code``."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"leadstream: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
