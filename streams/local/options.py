"""Command-line pieces the local servers share (sandbox, registry double): exit codes included.

A bad option, or one the server cannot start with (a port in use, a file it cannot read), is a
usage or configuration error: one line naming the option and exit status 2, as for every
``leadstream`` command (README, "Command line"). A failure after start is 1.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_USAGE = 2
MAX_PORT = 65535


def tcp_port(text: str) -> int:
    """Parse a ``--port`` value: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        msg = f"expected a TCP port from 0 to 65535, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return port


def log_level(text: str) -> str:
    """Parse a ``--log-level`` value (any case): DEBUG, INFO, WARNING or ERROR."""
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        msg = f"expected DEBUG, INFO, WARNING or ERROR, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return level


def cannot_start(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """Exit 2 with ``<prog>: error: <message>``, one line, for an option the server cannot use."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    parser.exit(EXIT_USAGE, f"{parser.prog}: error: {line}\n")
