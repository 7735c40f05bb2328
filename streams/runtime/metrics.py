"""Prometheus metrics (prometheus-client), served on ``/metrics`` by the worker's web server."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sized

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    """Every series Leadstream exports; one instance per worker process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the series in ``registry`` (a fresh one by default, so tests stay isolated)."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "leadstream_events_in", "Input records read, by topic.", ["topic"], registry=r
        )
        self.core = Counter(
            "leadstream_core_outcomes",
            "Decisions of the core by kind: emitted, duplicate_input, duplicate_conversion, "
            "ignored_status, waiting_for_form, withheld_consent_denied, ...",
            ["outcome"],
            registry=r,
        )
        self.conversions = Counter(
            "leadstream_conversions_built", "Conversions emitted, by event.", ["event"], registry=r
        )
        self.dead_letters = Counter(
            "leadstream_dead_letters", "Records dead-lettered, by reason.", ["reason"], registry=r
        )
        self.deliveries = Counter(
            "leadstream_deliveries",
            "Final delivery outcomes per event, by destination, outcome and API code.",
            ["destination", "outcome", "code"],
            registry=r,
        )
        self.requests = Counter(
            "leadstream_api_requests",
            "Events API requests, by destination and verdict.",
            ["destination", "verdict"],
            registry=r,
        )
        self.retries = Counter(
            "leadstream_delivery_retries",
            "Requests retried, by destination and reason.",
            ["destination", "reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "leadstream_delivery_batch_size",
            "Events per Events API request.",
            buckets=(1, 10, 50, 100, 250, 500, 750, 1000),
            registry=r,
        )
        self.request_seconds = Histogram(
            "leadstream_api_request_seconds",
            "Events API request latency.",
            ["destination"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "leadstream_destination_circuit_open",
            "1 while delivery to a destination is paused by an auth error.",
            ["destination"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "leadstream_consumer_lag",
            "Records between the committed offset and the end of the partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "leadstream_consumer_lag_seconds",
            "Age of the oldest record not yet processed.",
            ["topic", "partition"],
            registry=r,
        )
        #: Partitions that have lag series, so revoked ones can be removed.
        self._lag_partitions: set[tuple[str, int]] = set()

    def set_lag(self, topic: str, partition: int, lag: int, lag_seconds: float | None) -> None:
        """Export the lag of one partition this worker owns."""
        labels = (topic, str(partition))
        self.consumer_lag.labels(*labels).set(lag)
        if lag_seconds is not None:
            self.consumer_lag_seconds.labels(*labels).set(lag_seconds)
        self._lag_partitions.add((topic, partition))

    def keep_lag(self, assigned: Collection[tuple[str, int]]) -> list[tuple[str, int]]:
        """Drop the lag series of every partition outside ``assigned``; return those dropped.

        A partition another worker took over at a rebalance keeps its last value otherwise, and
        ``max by (topic)`` alerts and KEDA-style dashboards read that frozen number forever.
        """
        dropped = stale_partitions(self._lag_partitions, assigned)
        for topic, partition in dropped:
            labels = (topic, str(partition))
            for gauge in (self.consumer_lag, self.consumer_lag_seconds):
                try:
                    gauge.remove(*labels)
                except KeyError:  # lag_seconds was never set (the record could not be read)
                    pass
            self._lag_partitions.discard((topic, partition))
        return dropped

    def lag_partitions(self) -> set[tuple[str, int]]:
        """Partitions that currently have lag series."""
        return set(self._lag_partitions)

    def watch_tables(self, tables: Callable[[], Mapping[str, Sized]]) -> None:
        """Export ``leadstream_table_keys{table}``, read from the tables at scrape time."""
        self.registry.register(_TableKeys(tables))

    def count_core(self, counts: Mapping[str, int]) -> None:
        """Add a core Outcome's counts (name -> increment)."""
        for name, n in counts.items():
            if n:
                self.core.labels(name).inc(n)

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every series."""
        return generate_latest(self.registry)


def stale_partitions(
    exported: Iterable[tuple[str, int]], assigned: Collection[tuple[str, int]]
) -> list[tuple[str, int]]:
    """Partitions with exported lag that are not in ``assigned`` (sorted, for stable logs)."""
    owned = set(assigned)
    return sorted(tp for tp in set(exported) if tp not in owned)


class _TableKeys(Collector):
    """Keys held in each table by this worker, counted when scraped."""

    def __init__(self, tables: Callable[[], Mapping[str, Sized]]) -> None:
        self._tables = tables

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "leadstream_table_keys", "Keys held in each table by this worker.", labels=["table"]
        )
        for name, table in self._tables().items():
            family.add_metric([name], len(table))
        yield family
