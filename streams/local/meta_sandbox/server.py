"""HTTP server of the local Meta Conversions API sandbox: events edge, ledger, stats and faults.

Standalone on purpose: besides the local stack's shared plumbing (``streams.local.httpd``) it
imports nothing from the rest of ``streams`` (and nothing from the TikTok sandbox), so a bug
shared with the client or the payload builder cannot pass the tests.
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
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import parse_qs

from streams.local.httpd import Handler, HTTPServer, SandboxServer, control_error
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
    _Engine,
)

__all__ = ["FaultSettings", "MetaSandbox", "SandboxConfig", "main"]

logger = logging.getLogger(__name__)

_EDGE: Final = re.compile(r"^/(v\d+\.\d+)/([^/]+)/events/?$")


class _Handler(Handler):
    server_version = "LeadstreamMetaSandbox/1.0"

    @property
    def _engine(self) -> _Engine:
        return cast(_Engine, cast(HTTPServer, self.server).engine)

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
            self._send(control_error("method not allowed", HTTPStatus.METHOD_NOT_ALLOWED))
            return
        self._send(self._engine.handle_control("GET", path, query, b""))


class MetaSandbox(SandboxServer[SandboxConfig]):
    """The Conversions API sandbox server; binds its socket on construction (port 0: any free).

    Clients append ``/{version}/{dataset id}/events`` to `url`.
    """

    engine_class = _Engine
    handler_class = _Handler
    name = "Meta Conversions API sandbox"
    thread_name = "meta-capi-sandbox"
    label = "Meta sandbox"


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
    sandbox.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
