"""``leadstream report``: parse the range, read the topics, aggregate, print or write the report."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from streams.errors import ConfigError, LeadstreamError
from streams.ops.report.html import render_html
from streams.ops.report.model import aggregate, parse_time
from streams.ops.report.read import read_history
from streams.ops.report.render import render_text, to_json
from streams.serde.avro import AvroSerde
from streams.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_SINCE = timedelta(days=7)


def time_range(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """Return ``[since, until)`` from the options; default the 7 days before ``now``.

    Raises:
        ConfigError: an option cannot be parsed, or the range is empty.

    """
    try:
        start = parse_time(since, now) if since else now - DEFAULT_SINCE
        end = parse_time(until, now) if until else now
    except ValueError as exc:
        msg = f"--since/--until: {exc}"
        raise ConfigError(msg) from None
    if start >= end:
        msg = f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})"
        raise ConfigError(msg)
    return start, end


def check_options(
    since: str | None, until: str | None, html: str | None, now: datetime
) -> tuple[datetime, datetime, Path | None]:
    """Return the range and the HTML path, before anything connects.

    Raises:
        ConfigError: a time cannot be parsed, the range is empty, or the folder is missing.

    """
    start, end = time_range(since, until, now)
    target = Path(html) if html else None
    if target is not None and not target.parent.is_dir():
        msg = f"--html: folder {target.parent} does not exist"
        raise ConfigError(msg)
    return start, end, target


def run_report(
    settings: Settings,
    *,
    since: str | None,
    until: str | None,
    as_json: bool,
    html: str | None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    now: datetime | None = None,
    serde: AvroSerde | None = None,
) -> int:
    """Run ``leadstream report``; return 0, or 1 when reading fails midway (Kafka, registry).

    Raises:
        ConfigError: bad options (the caller exits 2).

    """
    out = out or sys.stdout
    err = err or sys.stderr
    start, end, target = check_options(since, until, html, now or datetime.now(tz=UTC))
    try:
        serde = serde or AvroSerde.from_settings(settings)
    except ValueError as exc:  # the registry client refuses a malformed URL this way
        msg = f"LEADSTREAM_SCHEMA_REGISTRY_URL: {exc}"
        raise ConfigError(msg) from None
    try:
        history, counts = read_history(
            settings, start, end, serde, progress_out=err if err.isatty() else None
        )
    except ConfigError:
        raise
    except LeadstreamError as exc:
        err.write(f"leadstream: error: {exc}\n")
        return 1
    report = aggregate(history, settings.rules(), start, end, counts)
    if target is not None:
        try:
            target.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            err.write(f"leadstream: error: cannot write {target}: {exc.strerror}\n")
            return 1
    if as_json:
        json.dump(to_json(report), out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(report))
        if target is not None:
            out.write(f"\nwrote {target}\n")
    return 0
