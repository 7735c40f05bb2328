"""The Faust sensor that counts per record and publishes Faust's series at the scrape."""

from __future__ import annotations

from typing import Any

from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.runtime.faust_sensor import ScrapedPrometheusMonitor


class FakeStream:
    shortlabel = "Stream: leads"


def build() -> tuple[ScrapedPrometheusMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    return ScrapedPrometheusMonitor(metrics=FaustMetrics.create(registry, "faust")), registry


def value(registry: CollectorRegistry, name: str, **labels: Any) -> float | None:
    return registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})


def test_counts_are_published_at_export_and_never_twice() -> None:
    monitor, registry = build()
    tp, stream = TP("leads.form-submitted", 2), FakeStream()
    for offset in (7, 8, 9):
        monitor.on_message_in(tp, offset, object())  # type: ignore[arg-type]
        monitor.on_stream_event_in(tp, offset, stream, object())  # type: ignore[arg-type]
    monitor.on_stream_event_out(tp, 7, stream, object())  # type: ignore[arg-type]
    monitor.on_message_out(tp, 7, object())  # type: ignore[arg-type]
    monitor.track_tp_end_offset(tp, 42)
    assert value(registry, "faust_messages_received_total") == 0  # nothing before the scrape

    monitor.export()
    monitor.export()  # a second scrape adds nothing

    assert value(registry, "faust_messages_received_total") == 3
    assert value(registry, "faust_active_messages") == 2
    assert value(registry, "faust_messages_received_per_topic_total", topic=tp.topic) == 3
    assert value(registry, "faust_total_events_total") == 3
    assert value(registry, "faust_total_active_events") == 2
    assert value(registry, "faust_total_events_per_stream_total", stream="stream.leads.events") == 3
    by_tp = {"topic": tp.topic, "partition": 2}
    assert value(registry, "faust_messages_received_per_topics_partition", **by_tp) == 9
    assert value(registry, "faust_topic_partition_end_offset", **by_tp) == 42

    monitor.on_message_in(tp, 10, object())  # type: ignore[arg-type]
    monitor.export()
    assert value(registry, "faust_messages_received_total") == 4
