"""Per-package branch coverage of the last test run, and the floors CI enforces.

Run after ``pytest --cov`` (``make test`` does): prints one line per package with its combined
line + branch coverage and exits 1 naming every package under its floor. Only the test process
is measured; code that runs only inside worker subprocesses (the integration tier's workers)
counts as uncovered, so the floors are set on what the in-process tests reach.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import coverage
from coverage.exceptions import NoDataError

# Package (glob of files) -> floor in percent. README "Coverage" explains the figures.
FLOORS: dict[str, tuple[str, float]] = {
    "domain (pure core)": ("streams/domain/*", 95.0),
    "delivery": ("streams/runtime/delivery.py", 90.0),
    "outputs": ("streams/runtime/outputs.py", 90.0),
    "tiktok client": ("streams/tiktok/client.py", 90.0),
    "transport": ("streams/runtime/faust_repairs.py", 90.0),
}
# Reported, not enforced.
REPORTED: dict[str, str] = {
    "pipeline + serde": "streams/serde/pipeline.py,streams/serde/*",
    "settings + cli": "streams/settings.py,streams/ops/cli.py",
    "everything": "streams/*",
}


def percent(cov: coverage.Coverage, include: str) -> float | None:
    """Combined line + branch coverage of the files matching ``include`` (None: no data)."""
    try:
        return float(cov.report(include=include.split(","), file=io.StringIO()))
    except NoDataError:
        return None


def main(data_file: str = ".coverage") -> int:
    """Print the per-package table and return 1 when a package is under its floor."""
    if not Path(data_file).exists():
        print(f"coverage floor: no {data_file}; run pytest with --cov first", file=sys.stderr)
        return 2
    cov = coverage.Coverage(data_file=data_file)
    cov.load()
    failed = []
    print("\nbranch coverage by package (floor enforced)")
    for name, (include, floor) in FLOORS.items():
        got = percent(cov, include)
        ok = got is not None and got >= floor
        shown = "no data" if got is None else f"{got:6.2f} %"
        print(f"  {name:<22} {shown:>9}   floor {floor:.0f} %  {'ok' if ok else 'UNDER'}")
        if not ok:
            failed.append(name)
    for name, include in REPORTED.items():
        got = percent(cov, include)
        print(f"  {name:<22} {'no data' if got is None else f'{got:6.2f} %':>9}")
    if failed:
        print(f"coverage floor: under the floor: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
