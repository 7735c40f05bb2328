"""HTTP server of the local Meta Conversions API sandbox: events edge, ledger, stats and faults.

Standalone on purpose: it imports nothing from the rest of ``streams`` (and nothing from the
TikTok sandbox), so a bug shared with the client or the payload builder cannot pass the tests.
Standard library only.

Endpoints:
    ``POST /{version}/{dataset id}/events`` -- the Conversions API contract, validated strictly;
    the token in the ``access_token`` body field, query parameter or ``Authorization: Bearer``.
    ``GET /_sandbox/events`` -- accepted unique events (filters: event_name, event_id, pixel_id,
    action_source, test_event_code, test). ``GET /_sandbox/stats`` (``?prefix=P``) -- counters.
    ``POST /_sandbox/reset`` -- clear ledger and counters. ``GET|POST /_sandbox/faults`` --
    read or change fault injection.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Final, cast
from urllib.parse import parse_qs

from streams.local.meta_sandbox.config import (
    DEFAULT_PIXEL,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
    SHARE_FAULTS,
    FaultSettings,
    SandboxConfig,
)
from streams.local.meta_sandbox.engine import (
    EVENTS_PATH,
    FAULTS_PATH,
    RESET_PATH,
    STATS_PATH,
    _control_error,
    _Engine,
    _Reply,
)

__all__ = ["FaultSettings", "MetaSandbox", "SandboxConfig", "main"]

logger = logging.getLogger(__name__)

_EDGE: Final = re.compile(r"^/(v\d+\.\d+)/([^/]+)/events/?$")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: _Engine) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.engine = engine
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: Any) -> None:
        """Log an unexpected handler failure instead of printing it to stderr."""
        logger.exception("Meta sandbox request from %s failed", client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for seconds.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LeadstreamMetaSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 75

    @property
    def _engine(self) -> _Engine:
        return cast(_Server, self.server).engine

    def setup(self) -> None:
        """Count the connection, so clients can be checked for keep-alive reuse."""
        super().setup()
        self._engine.note_connection()

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._read_body()
        if body is None:
            return
        edge = _EDGE.match(path)
        if edge is None:
            self._send(self._engine.handle_control("POST", path, query, body))
            return
        token = parse_qs(query).get("access_token", [None])[-1]
        auth = self.headers.get("Authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:]
        reply = self._engine.handle_events_edge(
            edge.group(1), edge.group(2), token, self.headers.get("Content-Type"), body
        )
        self._send(reply)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if _EDGE.match(path):
            self._send(_control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED))
            return
        self._send(self._engine.handle_control("GET", path, query, b""))

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._fail(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
            return None
        if length > self._engine.config.max_body_bytes:
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return None
        return self.rfile.read(length)

    def _fail(self, status: HTTPStatus, message: str) -> None:
        self._send(_control_error(message, status))
        self.close_connection = True

    def _send(self, reply: _Reply) -> None:
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
        logger.debug("%s %s", self.client_address[0], format % args)


class MetaSandbox:
    """The Conversions API sandbox server; binds its socket on construction (port 0: any free)."""

    def __init__(self, config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        """Create the server and bind it."""
        self.config = config
        self._engine = _Engine(config)
        self._server = _Server((host, port), self._engine)
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; clients append ``/{version}/{id}/events``."""
        address = self._server.server_address
        host, port = str(address[0]), int(address[1])
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a background daemon thread; returns at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self.serve_forever, name="meta-capi-sandbox", daemon=True
        )
        self._thread.start()
        self._serving.wait(5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until `stop` is called."""
        logger.info("Meta Conversions API sandbox listening on %s", self.url)
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

    def __enter__(self) -> MetaSandbox:
        """Start serving."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop serving."""
        self.stop()

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        """Return the same counters as ``GET /_sandbox/stats``."""
        return self._engine.stats(prefix)

    def events(self, **filters: str) -> list[dict[str, Any]]:
        """Return accepted unique events, like ``GET /_sandbox/events``."""
        return [dict(record) for record in self._engine.events(filters)]

    def reset(self) -> None:
        """Clear the ledger and the counters (faults are kept)."""
        self._engine.reset()

    def configure_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault injection, like ``POST /_sandbox/faults``."""
        return self._engine.configure_faults(changes)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streams.local.meta_sandbox",
        description=(
            "Local Meta Conversions API sandbox. Serves POST /{version}/{dataset id}/events with "
            "strict validation, dedup by event_name + event_id and optional fault injection; "
            f"inspect it with GET {EVENTS_PATH}, GET {STATS_PATH}, POST {RESET_PATH} and "
            f"GET/POST {FAULTS_PATH}."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 picks one (default %(default)s)"
    )
    parser.add_argument(
        "--token", action="append", help=f"valid access token, repeatable (default {DEFAULT_TOKEN})"
    )
    parser.add_argument(
        "--pixel", action="append", help=f"valid dataset id, repeatable (default {DEFAULT_PIXEL})"
    )
    parser.add_argument(
        "--expired-token", action="append", default=[], help="token answered 190/463, repeatable"
    )
    faults = parser.add_argument_group("fault injection", "shares are per-request probabilities")
    for name in SHARE_FAULTS:
        faults.add_argument(
            f"--fault-{name.replace('_', '-')}", type=float, default=0.0, help=f"share of {name}"
        )
    faults.add_argument("--fault-auth-error", action="store_true", help="answer every request 190")
    faults.add_argument("--fault-seed", type=int, default=None, help="seed for reproducible faults")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the Meta sandbox from the command line until interrupted.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        The process exit status.

    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        faults = FaultSettings(
            **{name: getattr(args, f"fault_{name}") for name in SHARE_FAULTS},
            auth_error=args.fault_auth_error,
            seed=args.fault_seed,
        )
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    config = SandboxConfig(
        access_tokens=frozenset(args.token or [DEFAULT_TOKEN]),
        pixel_ids=frozenset(args.pixel or [DEFAULT_PIXEL]),
        expired_tokens=frozenset(args.expired_token),
        faults=faults,
    )
    sandbox = MetaSandbox(config, host=args.host, port=args.port)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        logger.info("Meta sandbox stopping")
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
