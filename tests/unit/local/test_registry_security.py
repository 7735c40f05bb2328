"""The registry double behind basic auth and TLS, driven by confluent-kafka's real client."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.errors import LeadstreamError
from streams.local.pki import Pki, make_pki
from streams.local.registry.server import (
    CONTENT_TYPE,
    RegistryServer,
    basic_auth_matches,
    main,
)
from streams.serde.avro import AvroSerde
from tests.unit.factories import make_form_record

USER, PASSWORD = "ci-user", "pä55:word"  # non-ASCII and a ':' in the password on purpose
USER_INFO = f"{USER}:{PASSWORD}"
V1 = json.dumps(
    {
        "type": "record",
        "name": "Lead",
        "namespace": "t",
        "fields": [{"name": "id", "type": "string"}],
    }
)
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secured(pki: Pki) -> Iterator[RegistryServer]:
    server = RegistryServer(
        basic_auth=(USER, PASSWORD), certfile=pki.server_cert, keyfile=pki.server_key
    )
    with server:
        yield server


def client(url: str, **conf: Any) -> SchemaRegistryClient:
    # No retries: a refused handshake must fail at once, not after seconds of backoff.
    return SchemaRegistryClient({"url": url, "max.retries": 0, **conf})


def trusted(server: RegistryServer, pki: Pki, user_info: str = USER_INFO) -> SchemaRegistryClient:
    return client(
        server.url, **{"ssl.ca.location": str(pki.ca_cert)}, **{"basic.auth.user.info": user_info}
    )


def failure(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever the client raised
        return exc
    pytest.fail("the call succeeded")


def https(server: RegistryServer, pki: Pki) -> http.client.HTTPSConnection:
    parts = urlsplit(server.url)
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=5, context=context)


def basic(user_info: str) -> str:
    return "Basic " + base64.b64encode(user_info.encode()).decode()


# ---- the happy path: TLS + basic auth through the real client --------------------------------


def test_register_and_fetch_over_https_with_basic_auth(secured: RegistryServer, pki: Pki) -> None:
    assert secured.url.startswith("https://127.0.0.1:")
    assert trusted(secured, pki).register_schema("leads-value", Schema(V1, "AVRO")) == 1
    fresh = trusted(secured, pki)  # a new client: the fetch reaches the server, not a cache
    assert json.loads(fresh.get_schema(1).schema_str or "") == json.loads(V1)
    assert fresh.get_subjects() == ["leads-value"]
    assert fresh.get_latest_version("leads-value").schema_id == 1


def test_avro_serde_round_trip_through_the_secured_registry(
    secured: RegistryServer, pki: Pki
) -> None:
    writer = AvroSerde(trusted(secured, pki), SCHEMAS)
    data = writer.encode("sec.leads.form-submitted", "FormSubmitted", make_form_record())
    reader = AvroSerde(trusted(secured, pki), SCHEMAS)  # must fetch the writer schema by id
    assert reader.decode(data, "FormSubmitted") == make_form_record()
    assert secured.registry.subjects() == ["sec.leads.form-submitted-value"]


def test_avro_serde_with_a_wrong_password_fails_with_401(secured: RegistryServer, pki: Pki) -> None:
    serde = AvroSerde(trusted(secured, pki, f"{USER}:wrong"), SCHEMAS)
    with pytest.raises(LeadstreamError, match="401"):
        serde.encode("sec.leads.form-submitted", "FormSubmitted", make_form_record())
    assert secured.registry.subjects() == []


# ---- basic auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_info", [f"{USER}:wrong", f"{USER}:{PASSWORD}x", f"other:{PASSWORD}", f"{USER}:"]
)
def test_wrong_credentials_get_401_and_change_nothing(
    secured: RegistryServer, pki: Pki, user_info: str
) -> None:
    exc = failure(lambda: trusted(secured, pki, user_info).register_schema("s", Schema(V1, "AVRO")))
    assert isinstance(exc, SchemaRegistryError)
    assert (exc.http_status_code, exc.error_code, exc.error_message) == (
        401,
        40101,
        "Unauthorized",
    )
    assert secured.registry.subjects() == []


def test_missing_auth_gets_401(secured: RegistryServer, pki: Pki) -> None:
    exc = failure(
        lambda: client(secured.url, **{"ssl.ca.location": str(pki.ca_cert)}).get_subjects()
    )
    assert isinstance(exc, SchemaRegistryError)
    assert (exc.http_status_code, exc.error_code) == (401, 40101)


def test_401_response_shape_and_keep_alive_after_a_refused_body(
    secured: RegistryServer, pki: Pki
) -> None:
    conn = https(secured, pki)
    try:
        body = json.dumps({"schema": V1})
        conn.request(
            "POST", "/subjects/s/versions", body=body, headers={"Content-Type": CONTENT_TYPE}
        )
        resp = conn.getresponse()
        assert resp.status == 401
        assert resp.getheader("Content-Type") == CONTENT_TYPE
        assert (resp.getheader("WWW-Authenticate") or "").startswith('Basic realm="')
        assert json.loads(resp.read()) == {"error_code": 40101, "message": "Unauthorized"}
        sock = conn.sock
        conn.request("GET", "/subjects", headers={"Authorization": basic(USER_INFO)})
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())) == (200, [])
        assert conn.sock is sock  # the refused body was consumed: the connection stayed usable
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (basic(USER_INFO), 200),
        ("basic " + base64.b64encode(USER_INFO.encode()).decode(), 200),  # scheme is case-blind
        ("Bearer " + base64.b64encode(USER_INFO.encode()).decode(), 401),
        ("Basic", 401),
        ("Basic !!not-base64!!", 401),
        (basic(USER_INFO + "\n"), 401),
        (basic(USER), 401),
    ],
)
def test_authorization_header_forms(
    secured: RegistryServer, pki: Pki, header: str, status: int
) -> None:
    conn = https(secured, pki)
    try:
        conn.request("GET", "/subjects", headers={"Authorization": header})
        assert conn.getresponse().status == status
    finally:
        conn.close()


def test_basic_auth_matches_only_the_exact_credentials() -> None:
    expected = b"u:p"
    assert basic_auth_matches("Basic dTpw", expected)
    assert not basic_auth_matches(None, expected)
    assert not basic_auth_matches("", expected)
    assert not basic_auth_matches("Basic dTpwcA==", expected)  # u:pp
    assert not basic_auth_matches("Basic dTo=", expected)  # u:


def test_basic_auth_without_tls(pki: Pki) -> None:
    with RegistryServer(basic_auth=(USER, PASSWORD)) as server:
        assert server.url.startswith("http://")
        assert client(server.url, **{"basic.auth.user.info": USER_INFO}).get_subjects() == []
        exc = failure(lambda: client(server.url).get_subjects())
        assert isinstance(exc, SchemaRegistryError) and exc.http_status_code == 401


# ---- TLS -------------------------------------------------------------------------------------


def test_client_without_the_ca_fails_certificate_verification(
    secured: RegistryServer, pki: Pki
) -> None:
    exc = failure(lambda: client(secured.url, **{"basic.auth.user.info": USER_INFO}).get_subjects())
    causes = []
    seen: BaseException | None = exc
    while seen is not None:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert any(isinstance(c, ssl.SSLCertVerificationError) for c in causes), repr(exc)
    assert trusted(secured, pki).get_subjects() == []  # the failed handshake hurt nobody else


def test_plain_http_to_the_tls_port_gets_a_clear_400(secured: RegistryServer, pki: Pki) -> None:
    plain = secured.url.replace("https://", "http://")
    exc = failure(
        lambda: client(plain, **{"basic.auth.user.info": USER_INFO}).register_schema(
            "s", Schema(V1, "AVRO")
        )
    )
    assert isinstance(exc, SchemaRegistryError)
    assert exc.http_status_code == 400
    assert "plain HTTP" in exc.error_message and "https://" in exc.error_message
    assert secured.registry.subjects() == []
    assert trusted(secured, pki).get_subjects() == []


def test_a_silent_connection_does_not_block_the_others(secured: RegistryServer, pki: Pki) -> None:
    parts = urlsplit(secured.url)
    with socket.create_connection((parts.hostname or "", parts.port or 0)):  # says nothing
        started = time.monotonic()
        assert trusted(secured, pki).get_subjects() == []
        assert time.monotonic() - started < 2.0


def test_stop_closes_kept_alive_tls_connections(pki: Pki) -> None:
    server = RegistryServer(certfile=pki.server_cert, keyfile=pki.server_key)
    server.start()
    conn = https(server, pki)
    try:
        conn.request("GET", "/subjects")
        assert conn.getresponse().read() == b"[]"
        server.stop()
        conn.sock.settimeout(2)  # type: ignore[union-attr]  # connected above
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/subjects")
            conn.getresponse()
    finally:
        conn.close()
        server.stop()


def test_certificate_and_key_in_one_file(pki: Pki) -> None:
    with RegistryServer(certfile=pki.server_keystore) as server:
        assert client(server.url, **{"ssl.ca.location": str(pki.ca_cert)}).get_subjects() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"basic_auth": ("", "p")}, "user must be non-empty"),
        ({"basic_auth": ("a:b", "p")}, "contain no ':'"),
        ({"keyfile": "server.key"}, "needs its certificate"),
        ({"certfile": "missing.pem"}, "cannot load the TLS certificate missing.pem"),
    ],
)
def test_bad_construction_is_a_clear_value_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegistryServer(**kwargs)


@pytest.mark.parametrize("key", ["client_key", "client_key_encrypted"])
def test_a_wrong_or_encrypted_key_is_a_clear_value_error(pki: Pki, key: str) -> None:
    # (That an encrypted key does not prompt for a pass phrase shows only on a terminal.)
    cert = pki.server_cert if key == "client_key" else pki.client_cert
    with pytest.raises(ValueError, match=r"cannot load the TLS certificate .* with key .*PEM"):
        RegistryServer(certfile=cert, keyfile=getattr(pki, key))


# ---- the command line ------------------------------------------------------------------------


def test_main_help_lists_the_security_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for option in ("--basic-auth-file", "--tls-cert", "--tls-key"):
        assert option in out


def test_main_serves_https_with_basic_auth_and_never_prints_the_password(
    tmp_path: Path, pki: Pki
) -> None:
    auth_file = tmp_path / "auth"
    auth_file.write_text(USER_INFO + "\n", encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.local.registry",
            "--port",
            "0",
            "--basic-auth-file",
            str(auth_file),
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "listening on https://127.0.0.1:" in line and repr(USER) in line
        url = line.split("listening on ")[1].split()[0]
        c = client(url, **{"ssl.ca.location": str(pki.ca_cert), "basic.auth.user.info": USER_INFO})
        assert c.register_schema("s", Schema(V1, "AVRO")) == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert PASSWORD not in line + err


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("no-colon-here", [], "must hold one line user:password"),
        (":secret-without-user", [], "must hold one line user:password"),
        (None, [], "cannot read the basic auth file"),
        ("u:secret-ok", ["--tls-key", "k.pem"], "--tls-key needs --tls-cert"),
    ],
)
def test_main_refuses_bad_security_options_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    args: list[str],
    message: str,
) -> None:
    auth_file = tmp_path / "auth"
    if content is not None:
        auth_file.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--basic-auth-file", str(auth_file), *args])
    assert info.value.code == 2  # a usage or configuration error
    error = capsys.readouterr().err.splitlines()[-1]  # argparse's usage line may come first
    assert error.startswith("leadstream registry: error: ") and message in error
    assert "secret" not in error
