"""HTTP server of the local TikTok Events API sandbox: track endpoint, ledger, stats and faults.

Standalone on purpose: besides the local stack's shared plumbing (``streams.local.httpd``,
``streams.local.options``) it imports nothing from the rest of ``streams``, so that a bug shared
with the client or the payload builder cannot pass the tests. Standard library only.

Endpoints:
    ``POST /open_api/v1.3/event/track/`` -- the Events API 2.0 contract, validated strictly.
    ``GET /_sandbox/events`` -- accepted unique events (filters: event, event_id, event_source,
    event_source_id, test_event_code, test).
    ``GET /_sandbox/stats`` -- counters (``?prefix=P``: the per-event counters count only events
    whose event_id starts with P). ``POST /_sandbox/reset`` -- clear ledger and counters.
    ``GET|POST /_sandbox/faults`` -- read or change fault injection.
"""

from __future__ import annotations

import argparse
import logging
from http import HTTPStatus
from typing import cast

from streams.local.httpd import Handler, HTTPServer, SandboxServer, control_error, json_reply
from streams.local.options import cannot_start, log_level, tcp_port
from streams.local.sandbox.config import (
    DEFAULT_CRM_EVENT_SET,
    DEFAULT_PIXEL,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
    EVENTS_PATH,
    FAULTS_PATH,
    HTTP_ERRORS,
    REJECTION_STYLES,
    RESET_PATH,
    STATS_PATH,
    TRACK_PATH,
    FaultSettings,
    SandboxConfig,
)
from streams.local.sandbox.engine import _Engine

logger = logging.getLogger(__name__)


class _Handler(Handler):
    server_version = "LeadstreamSandbox/1.0"

    @property
    def _engine(self) -> _Engine:
        return cast(_Engine, cast(HTTPServer, self.server).engine)

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        body = self._read_body()
        if body is None:
            return
        engine = self._engine
        if path == TRACK_PATH:
            reply = engine.handle_track(
                self.headers.get("Access-Token"), self.headers.get("Content-Type"), body
            )
        elif path == RESET_PATH:
            engine.reset()
            reply = json_reply({"ok": True})
        elif path == FAULTS_PATH:
            reply = engine.handle_faults(body)
        elif path in (EVENTS_PATH, STATS_PATH):
            reply = control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED)
        else:
            reply = control_error(f"no such endpoint: POST {path}", HTTPStatus.NOT_FOUND)
        self._send(reply)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        engine = self._engine
        if path == EVENTS_PATH:
            reply = engine.handle_events(query)
        elif path == STATS_PATH:
            reply = engine.handle_stats(query)
        elif path == FAULTS_PATH:
            reply = json_reply(engine.faults())
        elif path in (TRACK_PATH, RESET_PATH):
            reply = control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED)
        else:
            reply = control_error(f"no such endpoint: GET {path}", HTTPStatus.NOT_FOUND)
        self._send(reply)


class Sandbox(SandboxServer[SandboxConfig]):
    """The Events API sandbox server; binds its socket on construction (port 0: any free port)."""

    engine_class = _Engine
    handler_class = _Handler
    name = "Events API sandbox"
    thread_name = "events-api-sandbox"
    label = "sandbox"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadstream sandbox",
        description=(
            "Local TikTok Events API 2.0 sandbox. Serves POST "
            f"{TRACK_PATH} with strict validation, platform-style dedup and optional fault "
            f"injection; inspect it with GET {EVENTS_PATH}, GET {STATS_PATH}, "
            f"POST {RESET_PATH} and GET/POST {FAULTS_PATH}."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=tcp_port,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks one (default %(default)s)",
    )
    parser.add_argument(
        "--token",
        action="append",
        help=f"valid Access-Token, repeatable (default {DEFAULT_TOKEN})",
    )
    parser.add_argument(
        "--pixel",
        action="append",
        help=f"valid pixel code for web events, repeatable (default {DEFAULT_PIXEL})",
    )
    parser.add_argument(
        "--crm-event-set",
        action="append",
        help=f"valid CRM event set id, repeatable (default {DEFAULT_CRM_EVENT_SET})",
    )
    parser.add_argument(
        "--expired-token", action="append", default=[], help="token answered 40102, repeatable"
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="RPS",
        help="requests per second per token before code 40100 (default: unlimited)",
    )
    faults = parser.add_argument_group(
        "fault injection", "shares are per-request probabilities (0..1) and must sum to <= 1"
    )
    faults.add_argument("--fault-throttle", type=float, default=0.0, help="share answered 40100")
    faults.add_argument(
        "--fault-server-error", type=float, default=0.0, help="share answered 50000"
    )
    faults.add_argument("--fault-http-502", type=float, default=0.0, help="share answered HTTP 502")
    faults.add_argument("--fault-http-503", type=float, default=0.0, help="share answered HTTP 503")
    faults.add_argument("--fault-timeout", type=float, default=0.0, help="share that hang")
    faults.add_argument(
        "--fault-timeout-seconds",
        type=float,
        default=15.0,
        help="how long a timeout fault hangs (default %(default)s)",
    )
    faults.add_argument(
        "--fault-latency-seconds",
        type=float,
        default=0.0,
        help="every track request waits this long first, like a slow API (default %(default)s)",
    )
    faults.add_argument(
        "--fault-timeout-mode",
        choices=("504", "close"),
        default="504",
        help="after hanging, answer HTTP 504 or close the connection (default %(default)s)",
    )
    faults.add_argument(
        "--fault-auth-error", action="store_true", help="answer every request 40105"
    )
    faults.add_argument("--fault-seed", type=int, default=None, help="seed for reproducible faults")
    faults.add_argument(
        "--fault-rejection-style",
        choices=REJECTION_STYLES,
        default="named",
        help="answer invalid events by name (data.N, partial success), reject the request "
        "naming them Batch.N, or reject it without naming them (default %(default)s)",
    )
    faults.add_argument(
        "--fault-duplicated-request",
        type=float,
        default=0.0,
        help="share of accepted requests answered 40050 (events still recorded)",
    )
    faults.add_argument(
        "--fault-max-events-413",
        type=int,
        default=None,
        metavar="N",
        help="answer HTTP 413 to requests with more than N events",
    )
    faults.add_argument(
        "--fault-http-error",
        type=int,
        choices=HTTP_ERRORS,
        default=None,
        help="answer every track request with this HTTP status, without the JSON envelope",
    )
    faults.add_argument(
        "--fault-unknown-code",
        type=int,
        default=None,
        metavar="CODE",
        help="answer every track request with this body code (e.g. 41234)",
    )
    parser.add_argument(
        "--log-level",
        type=log_level,
        default="INFO",
        help="DEBUG, INFO, WARNING or ERROR (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox from the command line until interrupted.

    Args:
        argv: Arguments without the program name; None reads ``sys.argv``.

    Returns:
        The process exit status: 0 after a clean stop. A bad option, or a host and port it
        cannot listen on, exits 2 with one line (argparse's ``SystemExit``).

    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        fault_settings = FaultSettings(
            throttle=args.fault_throttle,
            server_error=args.fault_server_error,
            http_502=args.fault_http_502,
            http_503=args.fault_http_503,
            timeout=args.fault_timeout,
            timeout_seconds=args.fault_timeout_seconds,
            latency_seconds=args.fault_latency_seconds,
            timeout_mode=args.fault_timeout_mode,
            auth_error=args.fault_auth_error,
            seed=args.fault_seed,
            rejection_style=args.fault_rejection_style,
            duplicated_request=args.fault_duplicated_request,
            max_events_413=args.fault_max_events_413,
            http_error=args.fault_http_error,
            unknown_code=args.fault_unknown_code,
        )
        config = SandboxConfig(
            access_tokens=frozenset(args.token or [DEFAULT_TOKEN]),
            pixel_codes=frozenset(args.pixel or [DEFAULT_PIXEL]),
            crm_event_set_ids=frozenset(args.crm_event_set or [DEFAULT_CRM_EVENT_SET]),
            rate_limit_per_second=args.rate_limit,
            expired_tokens=frozenset(args.expired_token),
            faults=fault_settings,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sandbox = Sandbox(config, host=args.host, port=args.port)
    except OSError as exc:  # in use, not an address of this host, unknown name
        cannot_start(parser, f"--host {args.host} --port {args.port}: cannot listen: {exc}")
    sandbox.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
