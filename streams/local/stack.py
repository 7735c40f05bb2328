"""The embedded local stack: broker, registry double, Events API sandbox and worker processes.

Used by ``leadstream demo`` and by the integration tests' session fixture, so both run the same
real parts: an Apache Kafka broker process (Tansu where no Java is found;
:mod:`streams.local.broker`), HTTP servers on loopback, and ``python -m streams worker``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from confluent_kafka import Consumer, KafkaError, TopicPartition

from streams.errors import LeadstreamError
from streams.local.broker import free_port, local_broker, wait_for_port
from streams.local.registry.server import RegistryServer
from streams.local.sandbox.config import SandboxConfig
from streams.local.sandbox.server import Sandbox

T = TypeVar("T")

TOKEN = "sandbox-token"  # noqa: S105 - the local sandbox's default token, not a secret
PIXEL = "SANDBOXPIXEL"
CRM_SET = "SANDBOXCRMSET"


@dataclass(frozen=True)
class Names:
    """Topic names and app id unique to one test or benchmark run, as ``LEADSTREAM_*`` overrides.

    Every run on a shared broker gets its own topics and consumer group.
    """

    prefix: str

    @property
    def form(self) -> str:
        """Input topic of form submits."""
        return f"{self.prefix}.leads.form-submitted"

    @property
    def booking(self) -> str:
        """Input topic of bookings."""
        return f"{self.prefix}.leads.booking-created"

    @property
    def status(self) -> str:
        """Input topic of CRM status changes."""
        return f"{self.prefix}.crm.lead-status-changed"

    @property
    def conversions(self) -> str:
        """Leadstream's conversions topic."""
        return f"{self.prefix}.leadstream.conversions"

    @property
    def deliveries(self) -> str:
        """Leadstream's delivery receipts topic."""
        return f"{self.prefix}.leadstream.deliveries"

    @property
    def dead_letter(self) -> str:
        """Leadstream's dead-letter topic."""
        return f"{self.prefix}.leadstream.dead-letter"

    @property
    def app_id(self) -> str:
        """Faust app id: consumer group and internal topic prefix."""
        return f"{self.prefix}-leadstream"

    def env(self) -> dict[str, str]:
        """Return the ``LEADSTREAM_*`` overrides that point a worker at these names."""
        return {
            "LEADSTREAM_APP_ID": self.app_id,
            "LEADSTREAM_TOPIC_FORM_SUBMITTED": self.form,
            "LEADSTREAM_TOPIC_BOOKING_CREATED": self.booking,
            "LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED": self.status,
            "LEADSTREAM_TOPIC_CONVERSIONS": self.conversions,
            "LEADSTREAM_TOPIC_DELIVERIES": self.deliveries,
            "LEADSTREAM_TOPIC_DEAD_LETTER": self.dead_letter,
        }


class LocalStack:
    """Broker + registry + sandbox on loopback; workers are started on demand."""

    def __init__(
        self,
        workdir: Path | None = None,
        partitions: int = 4,
        secured: bool = False,
        broker: str | None = None,
    ) -> None:
        """Describe the stack; call :meth:`start`.

        ``secured`` also opens the broker's SASL_SSL and mTLS listeners (Apache Kafka only);
        ``broker`` forces ``"kafka"`` or ``"tansu"`` (default: Kafka where Java 17+ is found).
        """
        # Absolute: a worker runs in its own folder (WorkerProcess.start), so paths in its
        # environment must not depend on the caller's directory.
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="leadstream-")).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.partitions = partitions
        self.broker = local_broker(self.workdir, secured=secured, prefer=broker)
        self.registry = RegistryServer()
        self.sandbox = Sandbox(
            SandboxConfig(
                access_tokens=frozenset({TOKEN}),
                pixel_codes=frozenset({PIXEL}),
                crm_event_set_ids=frozenset({CRM_SET}),
            )
        )
        self.workers: list[WorkerProcess] = []

    def start(self) -> LocalStack:
        """Start broker, registry and sandbox."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker.start()
        self.registry.start()
        self.sandbox.start()
        return self

    def stop(self) -> None:
        """Stop workers first, then the servers and the broker."""
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        self.sandbox.stop()
        self.registry.stop()
        self.broker.stop()

    def env(self, **overrides: str) -> dict[str, str]:
        """Return the ``LEADSTREAM_*`` environment a worker or CLI command needs for this stack."""
        env = {
            "LEADSTREAM_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "LEADSTREAM_SCHEMA_REGISTRY_URL": self.registry.url,
            "LEADSTREAM_TIKTOK_API_URL": self.sandbox.url,
            "LEADSTREAM_TIKTOK_ACCESS_TOKEN": TOKEN,
            "LEADSTREAM_TIKTOK_PIXEL_CODE": PIXEL,
            "LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID": CRM_SET,
            "LEADSTREAM_TOPIC_PARTITIONS": str(self.partitions),
            "LEADSTREAM_SESSION_TIMEOUT": "6",
            "LEADSTREAM_HEARTBEAT_INTERVAL": "1",
            "LEADSTREAM_DELIVERY_LINGER": "0.2",
            # One broker: replication 1 is all it can do, and it is meant.
            "LEADSTREAM_TOPIC_REPLICATION": "1",
            "LEADSTREAM_ALLOW_LOW_REPLICATION": "true",
        }
        if self.broker.kind == "tansu":
            # Tansu lists short end offsets after multi-record batches (README, "Local broker").
            env["LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS"] = "true"
        env.update(overrides)
        return env

    def start_worker(self, name: str = "worker", **overrides: str) -> WorkerProcess:
        """Start ``python -m streams worker`` against this stack."""
        port = free_port()
        env = self.env(
            LEADSTREAM_WEB_PORT=str(port),
            LEADSTREAM_WEB_HOST="127.0.0.1",
            LEADSTREAM_DATA_DIR=str(self.workdir / f"{name}-data"),
            **overrides,
        )
        worker = WorkerProcess(env, self.workdir / f"{name}.log", port)
        worker.start()
        self.workers.append(worker)
        return worker

    def run_cli(
        self, *args: str, stdin: str | None = None, **overrides: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m streams ARGS`` against this stack and capture its output."""
        env = {**_clean_env(), **self.env(**overrides)}
        return subprocess.run(  # noqa: S603
            [sys.executable, "-m", "streams", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    def sandbox_get(self, path: str, **params: str) -> Any:
        """GET a sandbox control endpoint (``/_sandbox/...``) as JSON."""
        resp = requests.get(f"{self.sandbox.url}{path}", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def sandbox_post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POST to a sandbox control endpoint."""
        resp = requests.post(f"{self.sandbox.url}{path}", json=dict(body or {}), timeout=10)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def consume_all(self, topic: str, idle: float = 2.0, timeout: float = 30.0) -> list[Any]:
        """Read every record of ``topic`` from the start, until ``idle`` quiet seconds."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "group.id": f"reader-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            consumer.close()
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < deadline and time.monotonic() - quiet_since < idle:
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise LeadstreamError(str(err))
                    continue
                out.append(msg)
                quiet_since = time.monotonic()
        finally:
            consumer.close()
        return out


class WorkerProcess:
    """One ``python -m streams worker`` child process."""

    def __init__(self, env: Mapping[str, str], log_path: Path, web_port: int) -> None:
        """Describe the process; call :meth:`start`."""
        self.env = dict(env)
        self.log_path = log_path
        self.web_port = web_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the worker; its output goes to ``log_path``.

        It runs in ``log_path``'s folder, not in its caller's: ``python -m`` puts the working
        directory first on ``sys.path``, so a worker started from a checkout imported that
        checkout's ``streams/`` whatever its ``PYTHONPATH`` said (a benchmark comparing two
        checkouts compared one with itself).
        """
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "streams", "worker"],
            cwd=self.log_path.parent,
            env={**_clean_env(), **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    @property
    def url(self) -> str:
        """The worker's web server."""
        return f"http://127.0.0.1:{self.web_port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker's web server answers and its tables have recovered."""
        wait_until(
            lambda: self._ready(), timeout, f"worker on port {self.web_port} to be ready", self
        )

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            msg = f"worker exited with {self.proc.returncode}; see {self.log_path}"
            raise LeadstreamError(msg)
        if not wait_for_port("127.0.0.1", self.web_port, 0.1):
            return False
        try:
            resp = requests.get(f"{self.url}/health/ready", timeout=2)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def metrics(self) -> str:
        """Return the worker's ``/metrics`` text."""
        resp = requests.get(f"{self.url}/metrics", timeout=5)
        resp.raise_for_status()
        return resp.text

    def kill(self) -> None:
        """SIGKILL the worker (and its children)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop gracefully (SIGTERM), then kill."""
        if not self.proc or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        """Return the worker's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _clean_env() -> dict[str, str]:
    """Return the parent's environment without LEADSTREAM_* settings (each stack sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAM_")}


def wait_until(
    check: Callable[[], T], timeout: float, what: str, worker: WorkerProcess | None = None
) -> T:
    """Poll ``check`` until it returns something truthy; raise with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = ""
            if worker is not None:
                tail = "\n--- worker log tail ---\n" + worker.log_text()[-3000:]
            msg = f"timed out after {timeout:.0f}s waiting for {what}{tail}"
            raise LeadstreamError(msg)
        time.sleep(0.2)
