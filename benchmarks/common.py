"""Shared helpers: progress lines, unique topic names, percentiles, subprocess plumbing."""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from streams.local.stack import Names  # re-exported: the benchmark modules import it from here

T = TypeVar("T")

_START = time.monotonic()
_counter = itertools.count(1)


class BenchError(Exception):
    """A real failure of a measurement (something not delivered, a process that died...)."""


def progress(message: str) -> None:
    """Print one progress line to stderr, stamped with the seconds since the harness started."""
    print(f"[bench {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def new_names(label: str) -> Names:
    """Return names unique to this process and call, e.g. ``bench4711x3-e2e``."""
    return Names(prefix=f"bench{os.getpid()}x{next(_counter)}-{label}")


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values``, nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def poll(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> T:
    """Call ``check`` every ``interval`` s until it returns a value that is not None.

    ``alive`` is called on every round and should raise when the process being waited on died.
    Raises :class:`BenchError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f}s waiting for {what}"
            raise BenchError(msg)
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM a child started with ``start_new_session=True`` (its group), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads; None: this process)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(
    pid: int,
    what: str,
    *,
    below_pct: float = 15.0,
    window: float = 0.5,
    rounds: int = 3,
    timeout: float = 120.0,
) -> float:
    """Wait until process ``pid`` used under ``below_pct`` % of a core for ``rounds`` windows.

    Returns the seconds waited. Used to start a latency run on a worker that has finished the
    work its setup caused (forms, identity index, changelogs) instead of queueing behind it.
    """
    started = time.monotonic()
    quiet = 0
    last = cpu_seconds(pid)
    while quiet < rounds:
        if time.monotonic() - started > timeout:
            msg = f"timed out after {timeout:.0f}s waiting for {what} to go idle"
            raise BenchError(msg)
        time.sleep(window)
        now = cpu_seconds(pid)
        if now is None or last is None:
            msg = f"{what} (pid {pid}) is gone"
            raise BenchError(msg)
        quiet = quiet + 1 if 100 * (now - last) / window < below_pct else 0
        last = now
    return time.monotonic() - started


def find_pid(*needles: str) -> int | None:
    """The pid of a process whose command line contains every one of ``needles``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                text = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in text for needle in needles):
            return int(entry)
    return None


@dataclass
class CpuMeter:
    """CPU use of a few processes over an interval, in % of one core."""

    pids: dict[str, int | None]
    started: float = 0.0
    before: dict[str, float | None] | None = None

    def start(self) -> None:
        """Mark the start of the interval."""
        self.started = time.monotonic()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float | None]:
        """Percent of one core each process used since :meth:`start` (None if unknown)."""
        wall = time.monotonic() - self.started
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            first = (self.before or {}).get(name)
            last = cpu_seconds(pid)
            out[name] = None if first is None or last is None else 100 * (last - first) / wall
        return out


def _proc_stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process, its waited-for children and its live descendants."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    stats = {int(pid): _proc_stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    todo = list(children.get(os.getpid(), []))
    while todo:
        child = todo.pop()
        stat = stats.get(child)
        if stat is not None:
            total += stat[1]
        todo += children.get(child, [])
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Contention:
    """CPU used by processes that are not the harness's own (other work on the machine)."""

    started: float = 0.0
    machine: float = 0.0
    own: float = 0.0

    def start(self) -> None:
        """Mark the start of a measurement."""
        self.started = time.monotonic()
        self.machine = machine_cpu_seconds()
        self.own = own_cpu_seconds()

    def stop(self) -> float:
        """Percent of one core that other processes used since :meth:`start`."""
        wall = max(time.monotonic() - self.started, 1e-6)
        other = (machine_cpu_seconds() - self.machine) - (own_cpu_seconds() - self.own)
        return max(0.0, 100 * other / wall)


def tail(text: str, chars: int = 2500) -> str:
    """The end of a log, for error messages."""
    return text[-chars:]
