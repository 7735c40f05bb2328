"""HTTP plumbing the local API sandboxes share: replies, the server, its handler and its wrapper.

Standard library only, and nothing from the rest of ``streams``: the TikTok and the Meta sandbox
import it and stay standalone with respect to the client code they test.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType
from typing import Any, ClassVar, Final, Generic, Protocol, Self, TypeVar, cast

logger = logging.getLogger(__name__)

JSON: Final = "application/json"
HTML: Final = "text/html; charset=utf-8"

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer; ``delay`` waits first, ``close`` drops the connection unanswered."""

    status: int
    body: bytes
    content_type: str = JSON
    delay: float = 0.0
    close: bool = False


def json_reply(payload: object, status: int = HTTPStatus.OK) -> Reply:
    """Return ``payload`` as compact JSON."""
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode())


def html_reply(status: HTTPStatus) -> Reply:
    """Return the small HTML error page a proxy or gateway answers with."""
    text = f"<html><body><h1>{status.value} {status.phrase}</h1></body></html>"
    return Reply(status.value, text.encode(), HTML)


def control_error(message: str, status: int = HTTPStatus.BAD_REQUEST) -> Reply:
    """Return the ``{"error": message}`` answer of the ``/_sandbox/*`` endpoints."""
    return json_reply({"error": message}, status)


class _Limits(Protocol):
    @property
    def max_body_bytes(self) -> int:
        """Largest accepted request body."""
        ...


class Engine(Protocol):
    """What the plumbing needs from a sandbox's protocol logic (its ``_Engine``)."""

    def __init__(self, config: Any) -> None:
        """Start with ``config`` (the sandbox's ``SandboxConfig``) and no traffic."""

    @property
    def config(self) -> _Limits:
        """The sandbox's configuration."""
        ...

    def note_connection(self) -> None:
        """Count a new connection."""

    def wait(self, seconds: float) -> None:
        """Sleep, woken early by `stop`."""

    def stop(self) -> None:
        """Wake every waiting request."""

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        """Return the counters."""
        ...

    def events(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Return the accepted records matching ``filters``."""
        ...

    def reset(self) -> None:
        """Clear the ledger and the counters."""

    def configure_faults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change fault injection and return the setting in force."""
        ...


class HTTPServer(ThreadingHTTPServer):
    """A threading server on IPv4 or IPv6 that logs handler failures and skips reverse DNS."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        handler: type[BaseHTTPRequestHandler],
        label: str,
    ) -> None:
        """Bind ``address``; ``label`` names the sandbox in the failure log."""
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.engine = engine
        self.label = label
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: Any) -> None:
        """Log an unexpected handler failure instead of printing it to stderr."""
        logger.exception("%s request from %s failed", self.label, client_address)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (getfqdn), which can stall for seconds."""
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class Handler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 handler: body reading (plain or chunked), replies and logging."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 75  # idle keep-alive connections are closed after this many seconds

    @property
    def _engine(self) -> Engine:
        return cast(HTTPServer, self.server).engine

    def setup(self) -> None:
        """Count the connection, so clients can be checked for keep-alive reuse."""
        super().setup()
        self._engine.note_connection()

    def _read_body(self) -> bytes | None:
        """Return the request body, or None after answering a bad or too large one."""
        limit = self._engine.config.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._fail(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return None
        if length > limit:
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return None
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._fail(HTTPStatus.BAD_REQUEST, "invalid chunked encoding")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _fail(self, status: HTTPStatus, message: str) -> None:
        self._send(control_error(message, status))
        self.close_connection = True

    def _send(self, reply: Reply) -> None:
        if reply.delay:
            self._engine.wait(reply.delay)
        if reply.close:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            logger.debug("client %s went away before the answer", self.client_address[0])
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Log requests at DEBUG instead of printing them to stderr."""
        logger.debug("%s %s", self.client_address[0], format % args)


def stop_on_sigterm() -> None:
    """Turn SIGTERM (how containers stop a process) into KeyboardInterrupt, on the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class SandboxServer(Generic[ConfigT]):
    """A sandbox's server, bound on construction (port 0: any free port); serves its engine.

    A sandbox names its engine and handler classes and how it calls itself in the class body.
    """

    engine_class: ClassVar[type[Engine]]
    handler_class: ClassVar[type[Handler]]
    name: ClassVar[str]  # in the "listening" and "stopping" log lines
    thread_name: ClassVar[str]  # of the background thread `start` runs
    label: ClassVar[str]  # in the failure log

    def __init__(self, config: ConfigT, host: str = "127.0.0.1", port: int = 0) -> None:
        """Create the server and bind it.

        Args:
            config: Tokens, event sources, limits and initial faults.
            host: Interface to bind.
            port: TCP port; 0 picks a free one (see `url`).

        Raises:
            OSError: The address cannot be bound.

        """
        self.config = config
        self._engine = self.engine_class(config)
        self._server = HTTPServer((host, port), self._engine, self.handler_class, self.label)
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; clients append the API path."""
        host, port = self._server.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a background daemon thread; returns at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, name=self.thread_name, daemon=True
        )
        self._thread.start()
        self._serving.wait(5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop` is called."""
        logger.info("%s listening on %s", self.name, self.url)
        self._serving.set()
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving, wake hanging timeout faults and close the socket."""
        self._engine.stop()
        if self._serving.is_set():
            self._server.shutdown()
            self._serving.clear()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def run(self) -> None:
        """Serve in the calling thread until Ctrl-C or SIGTERM, then stop (the command line)."""
        stop_on_sigterm()
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            logger.info("%s stopping", self.name)
        finally:
            self.stop()

    def __enter__(self) -> Self:
        """Start serving."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop serving."""
        self.stop()

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        """Return the same counters as ``GET /_sandbox/stats``.

        Args:
            prefix: When given, the per-event counters count only events whose event_id starts
                with it (request-level counters stay session-global).

        Returns:
            The counters, as JSON-ready data.

        """
        return self._engine.stats(prefix)

    def events(self, **filters: str) -> list[dict[str, Any]]:
        """Return accepted unique events, like ``GET /_sandbox/events``.

        Args:
            **filters: Exact-match filters on record fields; ``test="true"`` or ``"false"``
                selects test or live events.

        Returns:
            The matching records, oldest first.

        """
        return [dict(record) for record in self._engine.events(filters)]

    def reset(self) -> None:
        """Clear the ledger, the counters and any rate-limit state (faults are kept)."""
        self._engine.reset()

    def configure_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault injection, like ``POST /_sandbox/faults``.

        Args:
            **changes: Fault settings to change (see the sandbox's ``FaultSettings``).

        Returns:
            The setting now in force, as ``GET /_sandbox/faults`` shows it.

        """
        return self._engine.configure_faults(changes)
