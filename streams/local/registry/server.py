"""HTTP front of the registry double: Confluent's REST paths, bodies, error codes, content type."""

from __future__ import annotations

import argparse
import binascii
import hmac
import json
import logging
import socket
import ssl
import threading
from base64 import b64decode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.local.httpd import stop_on_sigterm
from streams.local.options import cannot_start, tcp_port
from streams.local.registry.compat import Compatibility, check_avro_compatibility
from streams.local.registry.rest import CONTENT_TYPE, RestApi
from streams.local.registry.store import (
    Registry,
    RegistryError,
)

__all__ = [
    "CONTENT_TYPE",
    "Compatibility",
    "Registry",
    "RegistryError",
    "RegistryServer",
    "RestApi",
    "basic_auth_matches",
    "check_avro_compatibility",
    "main",
    "read_basic_auth_file",
]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8081
REALM = "schema-registry"
# Bounds how long an idle or stalled connection may hold its thread before TLS is up.
TLS_HANDSHAKE_TIMEOUT = 10.0
_TLS_HANDSHAKE_RECORD = 0x16  # first byte a TLS client sends (a handshake record)


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, every response carries a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "LeadstreamRegistry/1.0"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms for
    # the delayed ACK on every call.
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._respond()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _respond(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            status, payload = 400, {"error_code": 400, "message": "Bad Content-Length"}
            self.close_connection = True
        else:
            # Read the body even when refusing it, so the kept-alive connection stays in step.
            body = self.rfile.read(length) if length else b""
            credentials = self.server.credentials
            if credentials is not None and not basic_auth_matches(
                self.headers.get("Authorization"), credentials
            ):
                status, payload = 401, {"error_code": 40101, "message": "Unauthorized"}
            else:
                try:
                    status, payload = self.server.api.handle(self.command, self.path, body)
                except Exception:  # a bug here must not kill the connection thread silently
                    logger.exception("registry request %s %s failed", self.command, self.path)
                    status, payload = 500, {"error_code": 50001, "message": "Error in the backend"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def basic_auth_matches(header: str | None, credentials: bytes) -> bool:
    """Tell whether an ``Authorization`` header carries exactly ``credentials``.

    Args:
        header: The request's ``Authorization`` header, or ``None`` when absent.
        credentials: The expected ``user:password``, UTF-8 encoded.

    Returns:
        True only for ``Basic <base64 of credentials>`` (scheme case-insensitive); the comparison
        takes the same time wherever the first wrong byte is.

    """
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, credentials)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        api: RestApi,
        credentials: bytes | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.api = api
        self.credentials = credentials
        self._tls = tls
        self._live: set[Any] = set()
        self._live_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # TLS starts here, on the connection's own thread: a client that connects and stays
        # silent must not stall the accept loop, as a handshake on the listening socket would.
        if self._tls is not None:
            request = self._start_tls(request, client_address)
            if request is None:
                return
        super().process_request_thread(request, client_address)

    def _start_tls(self, conn: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        """Return the connection wrapped in TLS, or None after answering/closing a non-TLS one."""
        assert self._tls is not None  # noqa: S101 - only called when TLS is on
        try:
            conn.settimeout(TLS_HANDSHAKE_TIMEOUT)
            first = conn.recv(1, socket.MSG_PEEK)
            if not first:
                reason = "closed before the TLS handshake"
            elif first[0] != _TLS_HANDSHAKE_RECORD:
                reason = "plain HTTP on the HTTPS port, answered 400"
                _refuse_plain_http(conn)
            else:
                wrapped = self._tls.wrap_socket(conn, server_side=True)
                wrapped.settimeout(None)
                with self._live_lock:  # wrap_socket detached conn: track the fd's new owner
                    self._live.discard(conn)
                    self._live.add(wrapped)
                return wrapped
        except OSError as exc:  # ssl.SSLError is an OSError
            reason = f"TLS handshake failed: {exc}"
        logger.debug("connection from %s closed: %s", client_address, reason)
        with self._live_lock:
            self._live.discard(conn)
        conn.close()
        return None

    def shutdown_request(self, request: Any) -> None:
        with self._live_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the listener and every kept-alive connection, so a stopped registry is gone."""
        super().server_close()
        with self._live_lock:
            live, self._live = list(self._live), set()
        for conn in live:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _refuse_plain_http(conn: socket.socket) -> None:
    """Answer a plain-HTTP request on the HTTPS port with a 400 saying so, then close."""
    try:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        data = json.dumps(
            {
                "error_code": 400,
                "message": "This registry serves HTTPS; the request came as plain HTTP "
                "(use an https:// URL)",
            }
        ).encode()
        conn.sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\n"
            b"Content-Length: " + str(len(data)).encode() + b"\r\nConnection: close\r\n\r\n" + data
        )
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while conn.recv(65536):  # drain the unread body so closing does not reset the reply
            pass
    except OSError:
        pass


def _tls_context(certfile: str | Path, keyfile: str | Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # An empty password makes an encrypted key fail at once instead of prompting on a tty.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        key = f" with key {keyfile}" if keyfile is not None else ""
        msg = (
            f"cannot load the TLS certificate {certfile}{key}: {exc} "
            "(PEM certificate chain and its unencrypted PEM key needed)"
        )
        raise ValueError(msg) from None
    return context


class RegistryServer:
    """A :class:`Registry` served over HTTP(S); binds in the constructor, so ``url`` is known.

    With ``basic_auth``, every request must carry ``Authorization: Basic`` with those
    credentials; any other gets 401 ``{"error_code": 40101, "message": "Unauthorized"}`` and a
    ``WWW-Authenticate`` challenge. With ``certfile``, the server speaks only TLS (``https://``);
    a plain-HTTP request is answered 400 and closed.

    Example:
        >>> with RegistryServer(basic_auth=("ci", "s3cret"), certfile="server.pem",
        ...                     keyfile="server.key") as server:  # doctest: +SKIP
        ...     SchemaRegistryClient({"url": server.url, "ssl.ca.location": "ca.pem",
        ...                           "basic.auth.user.info": "ci:s3cret"}).get_subjects()

    """

    def __init__(
        self,
        registry: Registry | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        basic_auth: tuple[str, str] | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
    ) -> None:
        """Bind the listening socket (not yet serving).

        Args:
            registry: The store to serve; a fresh in-memory one if ``None``.
            host: Interface to bind.
            port: TCP port; 0 picks a free one (see :attr:`port`).
            basic_auth: ``(user, password)`` every request must present, or ``None`` for none.
            certfile: PEM certificate chain (server first); turns TLS on. May hold the key too.
            keyfile: PEM private key (unencrypted) when it is not in ``certfile``.

        Raises:
            ValueError: Bad credentials (empty user, ``:`` in the user), ``keyfile`` without
                ``certfile``, or a certificate/key that cannot be loaded.
            OSError: The address cannot be bound.

        """
        credentials: bytes | None = None
        if basic_auth is not None:
            user, password = basic_auth
            if not user or ":" in user:
                msg = "basic auth user must be non-empty and contain no ':'"
                raise ValueError(msg)
            credentials = f"{user}:{password}".encode()
        if keyfile is not None and certfile is None:
            msg = "a TLS key needs its certificate (certfile)"
            raise ValueError(msg)
        tls = _tls_context(certfile, keyfile) if certfile is not None else None
        self.registry = registry if registry is not None else Registry()
        self._host = host
        self._scheme = "https" if tls is not None else "http"
        self._httpd = _HttpServer(host, port, RestApi(self.registry), credentials, tls)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8081`` (``https://`` when TLS is on)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{self._scheme}://{host}:{self._httpd.server_port}"

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        return self._httpd.server_port

    def start(self) -> None:
        """Serve on a daemon thread and return immediately."""
        if self._thread is not None:
            return
        # A short poll interval keeps stop() (and test teardown) from waiting half a second.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="schema-registry",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (if started) and release the socket. Safe to call twice."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted; then release the socket."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadstream registry",
        description=(
            "Run a local Confluent-compatible schema registry double (Avro only). It serves the "
            "REST subset confluent-kafka's SchemaRegistryClient, AvroSerializer and "
            "AvroDeserializer use: register, lookup, schemas by id, subjects and versions, "
            "deletes, compatibility checks (NONE/BACKWARD/FORWARD/FULL and transitive variants; "
            "default BACKWARD) and /config. Point clients at the URL it logs."
        ),
        epilog="State is in memory unless --data is given. Stop with Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default: %(default)s; use 0.0.0.0 inside a container)",
    )
    parser.add_argument(
        "--port",
        type=tcp_port,
        default=DEFAULT_PORT,
        help="TCP port (default: %(default)s, Confluent's; 0 picks a free one)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help=(
            "JSON file holding subjects, schemas and config: loaded at start if it exists, "
            "rewritten after every change, so a restart keeps schema ids"
        ),
    )
    parser.add_argument(
        "--basic-auth-file",
        type=Path,
        metavar="FILE",
        help=(
            "require HTTP basic auth: FILE holds one line user:password (the form of "
            "LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH); other requests get 401"
        ),
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="serve HTTPS only, with this PEM certificate chain (server certificate first)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        metavar="FILE",
        help="PEM private key (unencrypted) of --tls-cert, unless that file holds it",
    )
    return parser


def read_basic_auth_file(path: Path) -> tuple[str, str]:
    """Read ``user:password`` from the first line of ``path``.

    Raises:
        ValueError: The file is unreadable or its line is not ``user:password``; the message
            names the file, never its content.

    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"cannot read the basic auth file {path}: {reason}"
        raise ValueError(msg) from None
    lines = text.splitlines()
    user, sep, password = (lines[0] if lines else "").partition(":")
    if not sep or not user:
        msg = f"the basic auth file {path} must hold one line user:password"
        raise ValueError(msg)
    return user, password


def main(argv: list[str] | None = None) -> int:
    """Run the registry double until interrupted.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit status: 0 after a clean stop. A bad option, or a data file, port,
        basic auth file or TLS certificate it cannot use, exits 2 with one line naming the
        option (argparse's ``SystemExit``).

    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.tls_key is not None and args.tls_cert is None:
        parser.error("--tls-key needs --tls-cert")
    if args.data is not None and not args.data.parent.is_dir():
        cannot_start(parser, f"--data {args.data}: folder {args.data.parent} does not exist")
    try:
        auth = read_basic_auth_file(args.basic_auth_file) if args.basic_auth_file else None
    except ValueError as exc:
        cannot_start(parser, f"--basic-auth-file: {exc}")
    try:
        registry = Registry(args.data)
    except (OSError, ValueError, KeyError, TypeError, RegistryError) as exc:
        why = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        cannot_start(parser, f"--data {args.data}: not a registry data file it can load ({why})")
    try:
        server = RegistryServer(
            registry,
            args.host,
            args.port,
            basic_auth=auth,
            certfile=args.tls_cert,
            keyfile=args.tls_key,
        )
    except ValueError as exc:  # the certificate or key (the credentials were checked above)
        cannot_start(parser, f"--tls-cert/--tls-key: {exc}")
    except OSError as exc:  # in use, not an address of this host, unknown name
        cannot_start(parser, f"--host {args.host} --port {args.port}: cannot listen: {exc}")
    stop_on_sigterm()
    logger.info(
        "schema registry listening on %s (%s%s)",
        server.url,
        f"data file {args.data}" if args.data else "in memory",
        f"; basic auth required, user {auth[0]!r}" if auth else "",
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    logger.info("schema registry stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
