"""Lag series follow the assignment: a revoked partition's lag disappears from /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from streams.ops.lag import PartitionLag, slowest
from streams.runtime.metrics import Metrics, stale_partitions


def lag_series(metrics: Metrics) -> dict[str, set[tuple[str, str]]]:
    """Label sets (topic, partition) of each lag family in the scrape."""
    found: dict[str, set[tuple[str, str]]] = {
        "leadstream_consumer_lag": set(),
        "leadstream_consumer_lag_seconds": set(),
    }
    for family in text_string_to_metric_families(metrics.render().decode()):
        if family.name in found:
            for sample in family.samples:
                found[family.name].add((sample.labels["topic"], sample.labels["partition"]))
    return found


def test_stale_partitions_are_those_outside_the_assignment() -> None:
    exported = {("a", 0), ("a", 1), ("b", 0), ("b", 3)}
    assert stale_partitions(exported, {("a", 1), ("b", 0), ("c", 2)}) == [("a", 0), ("b", 3)]
    assert stale_partitions(exported, exported) == []
    assert stale_partitions(exported, set()) == sorted(exported)
    assert stale_partitions(set(), {("a", 0)}) == []


def test_keep_lag_removes_revoked_partitions_from_the_scrape() -> None:
    metrics = Metrics()
    for partition in range(4):
        metrics.set_lag("leads.form", partition, 10 + partition, 2.5)
    metrics.set_lag("leads.status", 0, 0, None)  # no age: lag_seconds never set for it
    assert lag_series(metrics)["leadstream_consumer_lag"] == {
        ("leads.form", "0"),
        ("leads.form", "1"),
        ("leads.form", "2"),
        ("leads.form", "3"),
        ("leads.status", "0"),
    }

    dropped = metrics.keep_lag({("leads.form", 1), ("leads.form", 3)})

    assert dropped == [("leads.form", 0), ("leads.form", 2), ("leads.status", 0)]
    series = lag_series(metrics)
    assert series["leadstream_consumer_lag"] == {("leads.form", "1"), ("leads.form", "3")}
    assert series["leadstream_consumer_lag_seconds"] == {("leads.form", "1"), ("leads.form", "3")}
    assert metrics.lag_partitions() == {("leads.form", 1), ("leads.form", 3)}
    assert metrics.keep_lag({("leads.form", 1), ("leads.form", 3)}) == []


def test_a_partition_assigned_again_is_exported_again() -> None:
    metrics = Metrics()
    metrics.set_lag("t", 0, 5, 1.0)
    metrics.keep_lag(set())
    assert lag_series(metrics)["leadstream_consumer_lag"] == set()
    metrics.set_lag("t", 0, 7, 3.0)
    text = metrics.render().decode()
    assert 'leadstream_consumer_lag{partition="0",topic="t"} 7.0' in text
    assert 'leadstream_consumer_lag_seconds{partition="0",topic="t"} 3.0' in text


def test_a_partition_read_by_two_groups_shows_the_slower_one() -> None:
    """With Meta, Faust's fan-out and the conversions reader both read the conversions."""
    fanout = PartitionLag("app", "conv", 0, 90, 100, 10, 2.0)
    reader = PartitionLag("app-deliver", "conv", 0, 60, 100, 40, 9.0)
    other = PartitionLag("app", "form", 0, 5, 5, 0, 0.0)
    assert sorted(slowest([fanout, other, reader]), key=lambda r: r.topic) == [reader, other]
    assert slowest([reader, fanout]) == [reader]
