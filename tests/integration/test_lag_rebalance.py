"""Issue 16 §3: after a rebalance a worker exports lag only for the partitions it still owns."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from streams.local.stack import LocalStack, WorkerProcess, wait_until
from tests.conftest import Names


def lag_partitions(worker: WorkerProcess, topic: str) -> set[int]:
    """Partitions of ``topic`` with a ``leadstream_consumer_lag`` series in the worker's scrape."""
    found: set[int] = set()
    for family in text_string_to_metric_families(worker.metrics()):
        if family.name == "leadstream_consumer_lag":
            found |= {
                int(sample.labels["partition"])
                for sample in family.samples
                if sample.labels["topic"] == topic
            }
    return found


def assigned(worker: WorkerProcess, topic: str) -> set[int] | None:
    """Partitions of ``topic`` the worker owns, from ``/health/ready`` (None while not ready)."""
    try:
        body = requests.get(f"{worker.url}/health/ready", timeout=5).json()
    except (requests.RequestException, ValueError):
        return None
    if not body.get("ready"):
        return None
    return {int(tp.rsplit(":", 1)[1]) for tp in body["assigned"] if tp.rsplit(":", 1)[0] == topic}


def test_revoked_partitions_disappear_from_metrics(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), "LEADSTREAM_LAG_INTERVAL": "1"}
    p = names.prefix
    topic = names.form
    every = set(range(stack.partitions))
    assert len(every) >= 2, "the rebalance needs at least two partitions"
    a = stack.start_worker(f"{p}-a", **env)
    b: WorkerProcess | None = None
    try:
        a.wait_ready()
        # Alone, A owns every partition and exports lag for each.
        wait_until(lambda: assigned(a, topic) == every, 30, "A to own every partition", a)
        wait_until(lambda: lag_partitions(a, topic) == every, 30, "A's lag on every partition", a)

        b = stack.start_worker(f"{p}-b", **env)
        b.wait_ready()

        def split() -> tuple[set[int], set[int]] | None:
            mine, theirs = assigned(a, topic), assigned(b, topic)  # type: ignore[arg-type]
            if not mine or not theirs or mine & theirs or mine | theirs != every:
                return None
            return mine, theirs

        mine, theirs = wait_until(split, 45, "the group to rebalance across A and B", b)

        # A's revoked partitions are gone from its /metrics; B exports the ones it took over.
        wait_until(lambda: lag_partitions(a, topic) == mine, 20, "A's lag to follow its share", a)
        wait_until(lambda: lag_partitions(b, topic) == theirs, 20, "B's lag on its share", b)
        assert lag_partitions(a, topic).isdisjoint(theirs)
        scrape = a.metrics()
    finally:
        if b is not None:
            b.stop()
        a.stop()
    for partition in theirs:
        needle = f'partition="{partition}",topic="{topic}"'
        assert f"leadstream_consumer_lag{{{needle}}}" not in scrape
        assert f"leadstream_consumer_lag_seconds{{{needle}}}" not in scrape
