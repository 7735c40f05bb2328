"""Measurement 7: one worker against two on the same 4 partitions.

Unlike :func:`benchmarks.e2e.run_saturation`, the workers are started on empty topics and the
backlog is produced only once every worker is ready and the group has settled (each worker holds
some of the input partitions, together all of them, none twice): a second worker joining a run
already under way would measure the rebalance, not the scaling. Throughput is status changes per
second from the start of producing to the last event accepted by the sandbox. The figure that
matters is the ratio of the two runs, taken back to back; on a machine with fewer cores than
workers it says more about the cores than about Leadstream.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import requests

from benchmarks import data
from benchmarks.common import BenchError, new_names, poll, progress, tail
from benchmarks.e2e import wait_accepted
from streams.local.stack import LocalStack, WorkerProcess


@dataclass(frozen=True)
class ScaleResult:
    """One run of ``workers`` workers through ``leads`` leads."""

    workers: int
    leads: int
    settle_s: float
    produce_s: float
    produce_to_all_s: float
    events_per_s: float
    requests: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready details."""
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _ready(worker: WorkerProcess) -> dict[str, Any] | None:
    try:
        resp = requests.get(f"{worker.url}/health/ready", timeout=1)
    except requests.RequestException:
        return None
    body: dict[str, Any] = resp.json() if resp.status_code == 200 else {}
    return body or None


def _alive(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        proc = worker.proc
        if proc is not None and proc.poll() is not None:
            msg = f"a worker exited with {proc.returncode}:\n{tail(worker.log_text())}"
            raise BenchError(msg)


def _settled(workers: list[WorkerProcess], topic: str, partitions: int) -> bool | None:
    """True when every worker is ready and they hold ``topic``'s partitions once each."""
    held: list[str] = []
    for worker in workers:
        body = _ready(worker)
        if body is None:
            return None
        mine = [tp for tp in body.get("assigned", []) if tp.rsplit(":", 1)[0] == topic]
        if not mine:
            return None
        held += mine
    return True if len(held) == len(set(held)) == partitions else None


def run_scale(
    stack: LocalStack,
    encoder: data.Encoder,
    leads: int,
    workers: int,
    *,
    linger: float,
    env: dict[str, str] | None = None,
) -> ScaleResult:
    """Start ``workers`` workers, let the group settle, produce the backlog, time it through."""
    names = new_names(f"scale{workers}")
    bootstrap = stack.broker.bootstrap
    data.create_topics(bootstrap, [names.form, names.status], stack.partitions)
    forms, statuses = data.backlog(encoder, names, leads, data.now_utc())
    stack.sandbox_post("/_sandbox/reset")
    started = time.perf_counter()
    running = [
        stack.start_worker(
            f"{names.prefix}-w{n}",
            **{**names.env(), "LEADSTREAM_DELIVERY_LINGER": str(linger), **(env or {})},
        )
        for n in range(workers)
    ]
    try:
        poll(
            lambda: _settled(running, names.status, stack.partitions),
            180,
            f"{workers} worker(s) to be ready with the partitions shared out",
            interval=0.25,
            alive=lambda: _alive(running),
        )
        settle_s = time.perf_counter() - started
        producing_at = time.time()
        produce_s = data.produce_backlog(bootstrap, [(names.form, forms), (names.status, statuses)])
        stats = wait_accepted(
            stack, running[0], leads, first_within=120, stall=60, what=f"{workers}-worker run"
        )
        _alive(running)
        events = stack.sandbox.events(event="ApplicationApproval")
    finally:
        for worker in running:
            worker.stop()
    if stats["accepted"] != leads or stats["rejected_total"]:
        msg = f"{workers}-worker run: {stats['accepted']} of {leads} accepted, {stats['rejected']}"
        raise BenchError(msg)
    last = max(datetime.fromisoformat(e["received_at"]).timestamp() for e in events)
    result = ScaleResult(
        workers=workers,
        leads=leads,
        settle_s=settle_s,
        produce_s=produce_s,
        produce_to_all_s=last - producing_at,
        events_per_s=leads / (last - producing_at),
        requests=stats["requests"],
    )
    progress(
        f"  {workers} worker(s) on {stack.partitions} partitions: {leads:,} events in "
        f"{result.produce_to_all_s:.1f}s = {result.events_per_s:,.0f}/s (settled after "
        f"{settle_s:.1f}s)"
    )
    return result
