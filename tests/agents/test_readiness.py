"""``/health/ready`` says why a worker is not ready, Kafka connection problems included."""

from __future__ import annotations

from pydantic import SecretStr

from streams.runtime.worker import Worker
from streams.settings import Settings


def _worker() -> Worker:
    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",  # nothing listens there
        schema_registry_url="http://127.0.0.1:9",  # never contacted by these tests
        tiktok_pixel_code="PIXEL",
        tiktok_access_token=SecretStr("test-token"),
        kafka_connect_timeout=1.0,
        lag_interval=1.0,
        topic_replication=1,
    )
    worker = Worker(settings)
    worker.app.finalize()
    return worker


async def test_a_worker_that_lost_kafka_is_not_ready_and_says_why() -> None:
    worker = _worker()
    worker.app.tables.recovery.completed.set()  # type: ignore[attr-defined]
    body, status = worker.readiness()
    assert status == 200
    assert "reason" not in body

    await worker.check_kafka()

    body, status = worker.readiness()
    assert status == 503
    assert body["ready"] is False
    assert body["reason"].startswith("cannot reach the broker 127.0.0.1:9: ")
    assert "LEADSTREAM_KAFKA_BOOTSTRAP" in body["reason"]


async def test_a_recovering_worker_says_so() -> None:
    worker = _worker()
    body, status = worker.readiness()
    assert status == 503
    assert body["reason"] == "table recovery has not finished"
