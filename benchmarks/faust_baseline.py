"""Measurement 2: the Faust baselines, small standalone apps run as subprocesses.

``python -m benchmarks.faust_baseline noop|naive`` with ``BENCH_*`` environment:

* ``noop``: ``stream.take(1000, within=0.05)`` and count -- the framework's consume ceiling;
* ``naive``: ``async for key, value in stream.items()``, a dict lookup, ``await topic.send(...)``
  -- a per-event agent written the obvious way.

Both use the aiokafka driver, ``broker_session_timeout=6``, heartbeat 1 s and the memory store,
with an app id unique to the run. When the agent has seen ``BENCH_EXPECTED`` records it writes
its timings as JSON to ``BENCH_RESULT``; the parent (:func:`run_baseline`) then stops it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import BenchError, poll, progress, stop_process, tail

MODES = ("noop", "naive")


@dataclass
class Meter:
    """Counts records and writes the result file once the expected number was seen."""

    expected: int
    result_path: Path
    started: float
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    cpu_first: float = 0.0  # process CPU seconds (every thread) at the first and last record
    cpu_last: float = 0.0
    done: bool = False

    def add(self, n: int) -> bool:
        """Count ``n`` records; return True when the expected number has just been reached."""
        now = time.perf_counter()
        if not self.first:
            self.first, self.cpu_first = now, time.process_time()
        self.count += n
        if self.count >= self.expected and not self.done:
            self.done = True
            self.last, self.cpu_last = now, time.process_time()
            return True
        return False

    def write(self, **extra: float) -> None:
        """Write the timings (seconds, perf_counter based) as JSON, atomically."""
        result = {
            "records": self.count,
            "seconds": self.last - self.first,
            "records_per_s": self.count / (self.last - self.first),
            "startup_to_first_s": self.first - self.started,
            "cpu_s": self.cpu_last - self.cpu_first,
            **extra,
        }
        tmp = self.result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(self.result_path)


def build_app(mode: str, env: dict[str, str]) -> Any:
    """Build the baseline Faust app for ``mode`` from ``BENCH_*`` settings."""
    import faust

    app = faust.App(
        env["BENCH_APP_ID"],
        broker=f"kafka://{env['BENCH_BOOTSTRAP']}",
        store="memory://",
        datadir=str(Path(tempfile.gettempdir()) / f"{env['BENCH_APP_ID']}-data"),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=int(env.get("BENCH_PARTITIONS", "4")),
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        stream_wait_empty=False,
    )
    source = app.topic(
        *env["BENCH_TOPICS"].split(","),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    meter = Meter(int(env["BENCH_EXPECTED"]), Path(env["BENCH_RESULT"]), time.perf_counter())

    if mode == "noop":

        async def noop(stream: Any) -> None:
            async for batch in stream.take(1000, within=0.05):
                if meter.add(len(batch)):
                    meter.write()

        app.agent(source, name="noop")(noop)
    else:
        sink = app.topic(
            env["BENCH_OUTPUT"],
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        lookup: dict[bytes, int] = {}

        async def naive(stream: Any) -> None:
            async for key, value in stream.items():
                lookup[key] = lookup.get(key, 0) + 1
                await sink.send(key=key, value=value)
                if meter.add(1):
                    flush_started = time.perf_counter()
                    await app.producer.flush()
                    meter.write(flush_s=time.perf_counter() - flush_started)

        app.agent(source, name="naive")(naive)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run one baseline app until stopped (the parent sends SIGTERM)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in MODES:
        print(f"usage: python -m benchmarks.faust_baseline {'|'.join(MODES)}", file=sys.stderr)
        return 2
    import faust

    app = build_app(args[0], dict(os.environ))
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()
    return 0


# -- the parent's side -------------------------------------------------------------------------


def run_baseline(
    mode: str,
    *,
    bootstrap: str,
    topics: list[str],
    partitions: int,
    expected: int,
    app_id: str,
    output_topic: str,
    workdir: Path,
    timeout: float,
) -> dict[str, Any]:
    """Start the baseline app as a subprocess, wait for its result, stop it; return the result."""
    result_path = workdir / f"{app_id}.json"
    log_path = workdir / f"{app_id}.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "LEADSTREAM_"))},
        "BENCH_APP_ID": app_id,
        "BENCH_BOOTSTRAP": bootstrap,
        "BENCH_TOPICS": ",".join(topics),
        "BENCH_PARTITIONS": str(partitions),
        "BENCH_EXPECTED": str(expected),
        "BENCH_RESULT": str(result_path),
        "BENCH_OUTPUT": output_topic,
    }
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "benchmarks.faust_baseline", mode],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    spawned = time.perf_counter()

    def alive() -> None:
        if proc.poll() is not None:
            msg = f"{mode} baseline exited with {proc.returncode}:\n{tail(log_path.read_text())}"
            raise BenchError(msg)

    try:
        poll(
            lambda: result_path.exists() or None,
            timeout,
            f"the {mode} baseline to see {expected} records",
            interval=0.1,
            alive=alive,
        )
        result: dict[str, Any] = json.loads(result_path.read_text())
    except BenchError as exc:
        if "timed out" in str(exc):
            msg = f"{exc}\n--- {mode} log tail ---\n{tail(log_path.read_text())}"
            raise BenchError(msg) from exc
        raise
    finally:
        stop_process(proc)
    result["spawn_to_result_s"] = time.perf_counter() - spawned
    progress(
        f"  {mode}: {result['records']:,} records in {result['seconds']:.2f}s = "
        f"{result['records_per_s']:,.0f}/s (first record {result['startup_to_first_s']:.1f}s "
        "after start)"
    )
    return result


if __name__ == "__main__":
    sys.exit(main())
