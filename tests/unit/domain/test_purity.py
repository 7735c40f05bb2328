"""The pure core imports no I/O framework and never reads the clock or the environment."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import streams.domain

DOMAIN = Path(streams.domain.__file__).parent
FORBIDDEN_MODULES = (
    "faust",
    "confluent_kafka",
    "requests",
    "fastavro",
    "aiokafka",
    "urllib3",
    "mode",
)
FORBIDDEN_SOURCE = re.compile(
    r"os\.environ|\bgetenv\b|datetime\.(now|utcnow|today)\b|\bdate\.today\b"
    r"|(?<![\w.])time\.(time|time_ns|monotonic|perf_counter)\b|^\s*(import time\b|from time import)"
)

# The destination rules that are pure too (payload building, verdicts); the retry plan is in
# domain.
PURE = (
    "streams.tiktok.payload",
    "streams.tiktok.verdicts",
    "streams.meta.payload",
    "streams.meta.verdicts",
)

PROBE = """
import importlib, json, pkgutil, sys
import streams.domain
names = [m.name for m in pkgutil.iter_modules(streams.domain.__path__, "streams.domain.")]
for name in names + PURE:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
""".replace("PURE", repr(list(PURE)))


def test_domain_modules_import_no_io_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    report = json.loads(result.stdout)
    expected = {f"streams.domain.{m.name}" for m in pkgutil.iter_modules([str(DOMAIN)])}
    assert set(report["modules"]) == expected
    assert {"streams.domain.lead", "streams.domain.intake", "streams.domain.records"} <= expected
    assert "streams.domain.retry" in expected  # the retry plan is pure too (issue 14)
    roots = {name.split(".")[0] for name in report["loaded"]}
    leaked = roots.intersection(FORBIDDEN_MODULES)
    assert not leaked, f"streams.domain pulls in {sorted(leaked)}"


def test_probe_would_notice_a_forbidden_import() -> None:
    probe = PROBE.replace("import importlib,", "import email.mime.text, importlib,")
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "email.mime.text" in json.loads(result.stdout)["loaded"]


@pytest.mark.parametrize(
    "line",
    [
        "x = os.environ['A']",
        "now = datetime.now(UTC)",
        "now = dt.datetime.utcnow()",
        "t = time.time()",
        "import time",
        "from time import monotonic",
        "v = os.getenv('A')",
    ],
)
def test_source_check_catches(line: str) -> None:
    assert FORBIDDEN_SOURCE.search(line)


def test_source_check_allows_timestamps() -> None:
    assert not FORBIDDEN_SOURCE.search('"event_time": int(conv.event_time.timestamp()),')


def test_domain_source_never_reads_clock_or_environment() -> None:
    sources = sorted(DOMAIN.glob("*.py")) + [
        DOMAIN.parent.joinpath(*name.split(".")[1:]).with_suffix(".py") for name in PURE
    ]
    assert len(sources) >= 10 and all(path.exists() for path in sources)
    offenders = [
        f"{path.name}:{lineno}: {line.strip()}"
        for path in sources
        for lineno, line in enumerate(path.read_text().splitlines(), start=1)
        if FORBIDDEN_SOURCE.search(line)
    ]
    assert offenders == []
