"""Optional: sample the worker with py-spy during a saturation run and summarise where time goes.

``python -m benchmarks --profile`` adds one extra saturation run (not counted in the medians)
with ``py-spy record --nonblocking --threads --format raw`` attached to the worker. The raw
collapsed stacks are kept in ``bench-results/worker-profile.txt`` (load them into speedscope or
``flamegraph.pl``); the summary lists the top functions by self and by total time, and self time
by package. py-spy is not a dependency: ``.venv/bin/pip install py-spy``.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import progress
from streams.local.stack import WorkerProcess

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

AREAS: tuple[tuple[str, str], ...] = (
    ("streams/", "leadstream (streams/)"),
    ("faust/", "faust"),
    ("mode/", "mode"),
    ("aiokafka/", "aiokafka"),
    ("kafka/", "aiokafka"),
    ("fastavro/", "fastavro"),
    ("phonenumbers/", "phonenumbers"),
    ("prometheus_client/", "prometheus_client"),
    ("requests/", "requests/urllib3/http"),
    ("urllib3/", "requests/urllib3/http"),
    ("http/", "requests/urllib3/http"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
    ("confluent_kafka/", "confluent_kafka"),
    ("pydantic", "pydantic"),
    ("logging/", "logging"),
    ("selectors", "selectors (I/O wait)"),
)
"""Self time is attributed by the file of the innermost frame (py-spy prints package paths)."""


def py_spy() -> str | None:
    """The py-spy executable (next to this Python first), or None when it is not installed."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def attach(out: Path, log: Path, rate: int = 100) -> Callable[[WorkerProcess], Callable[[], None]]:
    """An ``on_ready`` hook for :func:`benchmarks.e2e.run_saturation` that records the worker."""
    exe = py_spy()
    if exe is None:
        msg = "py-spy is not installed (.venv/bin/pip install py-spy)"
        raise RuntimeError(msg)

    def on_ready(worker: WorkerProcess) -> Callable[[], None]:
        assert worker.proc is not None
        with log.open("ab") as sink:
            proc = subprocess.Popen(  # noqa: S603
                [
                    exe,
                    "record",
                    "--pid",
                    str(worker.proc.pid),
                    "--rate",
                    str(rate),
                    "--nonblocking",
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        progress(f"  py-spy recording worker pid {worker.proc.pid} at {rate} Hz")

        def stop() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()

        return stop

    return on_ready


def _frame_key(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['name']} ({file})"


def _area(frame: str) -> str:
    match = _FRAME.match(frame)
    file = _frame_key(frame).rsplit(" (", 1)[-1] if match else frame
    for prefix, area in AREAS:
        if file.startswith(prefix):
            return area
    return "other"


def summarise(raw: Path, top: int = 10) -> dict[str, Any]:
    """Top functions by self and total time, self time by package and samples per thread."""
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        samples += count
        threads[thread.split(": ", 1)[-1]] += count
        leaf = frames[-1] if frames else "(no Python frame)"
        self_time[_frame_key(leaf)] += count
        areas[_area(leaf)] += count
        for key in {_frame_key(f) for f in frames}:
            total_time[key] += count

    def pct(counter: Counter[str], n: int) -> list[list[Any]]:
        return [[name, round(100 * c / samples, 1)] for name, c in counter.most_common(n)]

    return {
        "samples": samples,
        "threads": pct(threads, 10),
        "self_top": pct(self_time, top),
        "total_top": pct(total_time, top * 2),
        "self_by_package": pct(areas, 20),
    }
