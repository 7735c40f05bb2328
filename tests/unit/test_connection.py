"""The Kafka connection: client configurations, Faust credentials, error mapping (issue 12)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from confluent_kafka import KafkaError

from streams import connection
from streams.connection import (
    Diagnosis,
    KafkaConnection,
    check_connection,
    diagnose,
)
from streams.errors import ConfigError
from streams.local.pki import Pki, make_pki
from streams.ops.lag import LagProbe
from streams.runtime import offsets
from streams.runtime.app import create_app
from streams.settings import Settings

SCRAM = KafkaConnection("k1:9093,k2:9093", "SASL_SSL", "SCRAM-SHA-512", "svc", "s3cret")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- librdkafka configurations ----------------------------------------------------------------


def test_plaintext_sets_only_bootstrap_and_protocol() -> None:
    assert KafkaConnection("b:9092").librdkafka() == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "PLAINTEXT",
    }


def test_sasl_plaintext_sets_sasl_but_no_tls() -> None:
    conf = KafkaConnection("b:9092", "SASL_PLAINTEXT", "PLAIN", "u", "p").librdkafka()
    assert conf == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
    }


def test_sasl_ssl_sets_sasl_ca_and_hostname_check(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    conn = KafkaConnection("b:9093", "SASL_SSL", "SCRAM-SHA-256", "u", "p", ssl_ca_location=ca)
    assert conn.librdkafka() == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_ssl_mtls_sets_certificate_key_and_password(tmp_path: Path) -> None:
    conn = KafkaConnection(
        "b:9094",
        "SSL",
        ssl_ca_location=tmp_path / "ca.pem",
        ssl_certificate_location=tmp_path / "c.pem",
        ssl_key_location=tmp_path / "c.key",
        ssl_key_password="kp",  # noqa: S106 - test value
        ssl_check_hostname=False,
    )
    conf = conn.librdkafka(**{"group.id": "g"})
    assert conf == {
        "bootstrap.servers": "b:9094",
        "security.protocol": "SSL",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.certificate.location": str(tmp_path / "c.pem"),
        "ssl.key.location": str(tmp_path / "c.key"),
        "ssl.key.password": "kp",
        "ssl.endpoint.identification.algorithm": "none",
        "group.id": "g",
    }
    assert not any(k.startswith("sasl.") for k in conf)


def test_describe_and_repr_never_show_secrets() -> None:
    conn = KafkaConnection("b:9093", "SASL_SSL", "PLAIN", "svc", "s3cret", ssl_key_password="kp")  # noqa: S106 - test value
    for text in (conn.describe(), repr(conn), str(conn)):
        assert "s3cret" not in text
        assert "kp" not in text
    assert conn.describe() == "bootstrap b:9093, protocol SASL_SSL, mechanism PLAIN, user svc"


# --- Faust credentials ------------------------------------------------------------------------


def test_faust_credentials_per_protocol(pki: Pki) -> None:
    assert KafkaConnection("b:9092").faust_credentials() is None

    plain = KafkaConnection("b:9092", "SASL_PLAINTEXT", "SCRAM-SHA-256", "u", "p")
    creds = plain.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_PLAINTEXT"
    assert creds.mechanism.value == "SCRAM-SHA-256"
    assert (creds.username, creds.password, creds.ssl_context) == ("u", "p", None)

    secured = KafkaConnection(
        "b:9093", "SASL_SSL", "SCRAM-SHA-512", "u", "p", ssl_ca_location=pki.ca_cert
    )
    creds = secured.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == "SCRAM-SHA-512"
    assert isinstance(creds.ssl_context, ssl.SSLContext)

    mtls = KafkaConnection(
        "b:9094",
        "SSL",
        ssl_ca_location=pki.ca_cert,
        ssl_certificate_location=pki.client_cert,
        ssl_key_location=pki.client_key_encrypted,
        ssl_key_password=pki.client_key_password,
    )
    creds = mtls.faust_credentials()
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.protocol.value == "SSL"


def test_faust_passes_the_mechanism_to_aiokafka(pki: Pki) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    conn = KafkaConnection(
        "b:9093", "SASL_SSL", "SCRAM-SHA-512", "u", "p", ssl_ca_location=pki.ca_cert
    )
    auth = credentials_to_aiokafka_auth(conn.faust_credentials())
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "u"


def test_ssl_context_checks_hostname_only_when_asked(pki: Pki) -> None:
    on = KafkaConnection("b:9094", "SSL", ssl_ca_location=pki.ca_cert).ssl_context()
    off = KafkaConnection(
        "b:9094", "SSL", ssl_ca_location=pki.ca_cert, ssl_check_hostname=False
    ).ssl_context()
    assert on.check_hostname is True
    assert off.check_hostname is False
    assert off.verify_mode == ssl.CERT_REQUIRED  # the CA is still checked


def test_a_wrong_key_password_is_a_config_error(pki: Pki) -> None:
    conn = KafkaConnection(
        "b:9094",
        "SSL",
        ssl_ca_location=pki.ca_cert,
        ssl_certificate_location=pki.client_cert,
        ssl_key_location=pki.client_key_encrypted,
        ssl_key_password="wrong",  # noqa: S106 - test value
    )
    with pytest.raises(ConfigError, match="LEADSTREAM_KAFKA_SSL_KEY_PASSWORD") as info:
        conn.faust_credentials()
    assert "wrong" not in str(info.value)


def test_the_app_gets_the_credentials_and_serves_no_faust_views(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SSL_CA_LOCATION", str(pki.ca_cert))
    app = create_app(Settings())
    creds = app.conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL"
    served = [bp for _, bp in app.web._enabled_blueprints()]
    assert served == ["faust.web.apps.production_index:blueprint"]  # {"status": "OK"} at /


# --- error mapping ----------------------------------------------------------------------------


def _diag(conn: KafkaConnection, code: int, reason: str) -> Diagnosis:
    found = diagnose(conn, code, reason)
    assert found is not None
    return found


def test_rejected_credentials_name_the_settings_the_broker_and_mechanism() -> None:
    d = _diag(
        SCRAM,
        KafkaError._AUTHENTICATION,
        "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication failed "
        "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
    )
    assert d == Diagnosis(
        "the broker 127.0.0.1:9093 rejected "
        "LEADSTREAM_KAFKA_SASL_USERNAME/LEADSTREAM_KAFKA_SASL_PASSWORD "
        "(SASL authentication failed, mechanism SCRAM-SHA-512)",
        decisive=True,
    )
    assert "s3cret" not in d.message


def test_a_mechanism_the_broker_does_not_enable_names_the_mechanism_setting() -> None:
    d = _diag(
        SCRAM,
        KafkaError._AUTHENTICATION,
        "sasl_ssl://k1:9093/bootstrap: SASL SCRAM-SHA-512 mechanism handshake failed: Broker: "
        "Unsupported SASL mechanism: broker's supported mechanisms: PLAIN",
    )
    assert d.decisive
    assert d.message.startswith(
        "the broker k1:9093 does not accept LEADSTREAM_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
    )


@pytest.mark.parametrize(
    ("reason", "setting"),
    [
        (
            "ssl://k1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
            "certificate verify failed: broker certificate could not be verified",
            "LEADSTREAM_KAFKA_SSL_CA_LOCATION",
        ),
        (
            "ssl://k1:9093/bootstrap: SSL handshake failed: error:0A00010B:SSL routines::"
            "wrong version number",
            "LEADSTREAM_KAFKA_SECURITY_PROTOCOL=SSL",
        ),
        (
            "ssl://k1:9093/bootstrap: SSL handshake failed: certificate verify failed: "
            "Hostname mismatch",
            "LEADSTREAM_KAFKA_SSL_CHECK_HOSTNAME",
        ),
        (
            "ssl://k1:9093/bootstrap: Receive failed: SSL routines::tlsv13 alert certificate "
            "required: SSL alert number 116",
            "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION/LEADSTREAM_KAFKA_SSL_KEY_LOCATION",
        ),
    ],
)
def test_tls_failures_name_their_setting(reason: str, setting: str) -> None:
    conn = KafkaConnection("k1:9093", "SSL")
    d = _diag(conn, KafkaError._SSL, reason)
    assert d.decisive
    assert setting in d.message
    assert "the broker k1:9093" in d.message or "broker k1:9093" in d.message


def test_a_plaintext_client_at_a_tls_listener_is_told_to_check_the_protocol() -> None:
    d = _diag(
        KafkaConnection("k1:9093"),
        KafkaError._TRANSPORT,
        "[thrd:k1:9093/bootstrap]: k1:9093/bootstrap: Disconnected: connection reset by peer "
        "(after 0ms in state APIVERSION_QUERY)",
    )
    assert d.decisive
    assert "LEADSTREAM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in d.message
    assert "k1:9093" in d.message
    assert "[thrd:" not in d.message


@pytest.mark.parametrize(
    ("reason", "setting"),
    [
        (  # Apache Kafka 4.1's plaintext port, as librdkafka 2.16 reports it
            "[thrd:ssl://k1:9092/bootstrap]: ssl://k1:9092/bootstrap: SSL handshake failed: "
            "Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker "
            "listener? (after 2ms in state SSL_HANDSHAKE)",
            "LEADSTREAM_KAFKA_SECURITY_PROTOCOL=SSL",
        ),
        (  # Apache Kafka 4.1's mTLS listener, no client certificate given
            "[thrd:ssl://k1:9092/bootstrap]: ssl://k1:9092/bootstrap: Receive failed: "
            "error:0A000412:SSL routines::ssl/tls alert bad certificate: SSL alert number 42 "
            "(after 4ms in state APIVERSION_QUERY)",
            "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION/LEADSTREAM_KAFKA_SSL_KEY_LOCATION",
        ),
    ],
)
def test_tls_failures_reported_as_transport_errors_are_decisive(reason: str, setting: str) -> None:
    d = _diag(KafkaConnection("k1:9092", "SSL"), KafkaError._TRANSPORT, reason)
    assert d.decisive
    assert setting in d.message
    assert "the broker k1:9092" in d.message


def test_a_tls_handshake_a_plaintext_port_never_answers_is_decisive() -> None:
    d = _diag(
        KafkaConnection("k1:9092", "SSL"),
        KafkaError._TRANSPORT,
        "ssl://k1:9092/bootstrap: Connection setup timed out in state SSL_HANDSHAKE",
    )
    assert d.decisive
    assert "LEADSTREAM_KAFKA_SECURITY_PROTOCOL=SSL" in d.message


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (KafkaError._TRANSPORT, "k9:9092/bootstrap: Connect to ipv4#10.0.0.9:9092 failed: refused"),
        (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"),
        (KafkaError._RESOLVE, "k9:9092/bootstrap: Failed to resolve 'k9:9092'"),
    ],
)
def test_unreachable_brokers_wait_for_the_timeout_and_name_the_bootstrap(
    code: int, reason: str
) -> None:
    d = _diag(KafkaConnection("k9:9092"), code, reason)
    assert not d.decisive  # a broker that is still starting may answer in a moment
    assert "LEADSTREAM_KAFKA_BOOTSTRAP" in d.message
    assert "k9:9092" in d.message


def test_unrelated_errors_are_not_connection_problems() -> None:
    assert diagnose(SCRAM, KafkaError._PARTITION_EOF, "end of partition") is None


# --- check_connection -------------------------------------------------------------------------


class FakeProducer:
    """Stands in for confluent_kafka.Producer: reports ``errors`` through error_cb."""

    instances: list[FakeProducer] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.calls = 0
        FakeProducer.instances.append(self)

    def list_topics(self, timeout: float) -> object:
        self.calls += 1
        for code, reason in self.script(self.calls):
            self.conf["error_cb"](KafkaError(code, reason))
        if self.answer_on is not None and self.calls >= self.answer_on:
            return object()
        from confluent_kafka import KafkaException

        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    answer_on: int | None = None

    def script(self, call: int) -> list[tuple[int, str]]:
        return []


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeProducer]]:
    monkeypatch.setattr(connection, "Producer", FakeProducer)
    FakeProducer.instances = []
    yield FakeProducer
    FakeProducer.answer_on = None
    FakeProducer.script = lambda self, call: []  # type: ignore[method-assign]


def test_check_connection_returns_when_the_cluster_answers(fake: type[FakeProducer]) -> None:
    fake.answer_on = 2
    check_connection(SCRAM, timeout=5)
    conf = fake.instances[0].conf
    assert conf["sasl.password"] == "s3cret"  # the client is built from the one connection
    assert conf["security.protocol"] == "SASL_SSL"


def test_check_connection_stops_at_the_first_decisive_error(fake: type[FakeProducer]) -> None:
    fake.script = lambda self, call: [  # type: ignore[method-assign]
        (KafkaError._AUTHENTICATION, "sasl_ssl://k1:9093/1: SASL authentication error")
    ]
    with pytest.raises(ConfigError, match="rejected LEADSTREAM_KAFKA_SASL_USERNAME"):
        check_connection(SCRAM, timeout=60)
    assert fake.instances[0].calls == 1  # no waiting out the 60 s


def test_check_connection_gives_up_after_the_timeout_with_the_last_reason(
    fake: type[FakeProducer],
) -> None:
    fake.script = lambda self, call: [  # type: ignore[method-assign]
        (KafkaError._TRANSPORT, "k1:9093/bootstrap: Connect to ipv4#10.0.0.1:9093 failed")
    ]
    with pytest.raises(ConfigError, match=r"cannot reach the broker k1:9093.*within 0.3s"):
        check_connection(SCRAM, timeout=0.3)


def test_check_connection_against_nothing_fails_fast_and_clearly() -> None:
    """A real librdkafka client at a closed port: one line, within the timeout."""
    with pytest.raises(ConfigError, match=r"cannot reach the broker 127\.0\.0\.1:9: .*within 2s"):
        check_connection(KafkaConnection("127.0.0.1:9"), timeout=2)


def test_a_client_certificate_that_does_not_match_its_key_is_a_config_error(pki: Pki) -> None:
    conn = KafkaConnection(
        "127.0.0.1:9",
        "SSL",
        ssl_ca_location=pki.ca_cert,
        ssl_certificate_location=pki.client_cert,
        ssl_key_location=pki.server_key,
    )
    with pytest.raises(ConfigError, match="LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION"):
        check_connection(conn, timeout=2)


def test_a_wrong_key_password_is_named_when_librdkafka_loads_the_key(pki: Pki) -> None:
    conn = KafkaConnection(
        "127.0.0.1:9",
        "SSL",
        ssl_ca_location=pki.ca_cert,
        ssl_certificate_location=pki.client_cert,
        ssl_key_location=pki.client_key_encrypted,
        ssl_key_password="not-it",  # noqa: S106 - test value
    )
    with pytest.raises(ConfigError) as info:
        check_connection(conn, timeout=2)
    assert str(info.value).startswith("LEADSTREAM_KAFKA_SSL_KEY_PASSWORD (or ")
    assert "not-it" not in str(info.value)


# --- end offsets are confirmed only when asked ------------------------------------------------


def _no_fetch(*args: object, **kwargs: object) -> dict[Any, Any]:
    msg = "fetched_end_offsets must not be called"
    raise AssertionError(msg)


class FakeAdmin:
    def list_topics(self, timeout: float) -> Any:
        class Meta:
            partitions = {0: None}

        class Cluster:
            topics = {"t": Meta()}

        return Cluster()


class FakeConsumer:
    def get_watermark_offsets(self, tp: Any, timeout: float) -> tuple[int, int]:
        return (0, 5)

    def assign(self, tps: Any) -> None:
        pass

    def unassign(self) -> None:
        pass

    def poll(self, timeout: float) -> None:
        return None


def _probe(monkeypatch: pytest.MonkeyPatch, confirm: bool) -> LagProbe:
    import streams.ops.lag as lag

    monkeypatch.setattr(lag, "AdminClient", lambda conf: FakeAdmin())
    monkeypatch.setattr(lag, "Consumer", lambda conf: FakeConsumer())
    monkeypatch.setattr(lag, "committed_offsets", lambda admin, group: [])
    return LagProbe(KafkaConnection("b:9092"), "g", confirm_end_offsets=confirm)


def test_lag_uses_the_listed_end_without_a_fetch_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(offsets, "fetched_end_offsets", _no_fetch)
    [row] = _probe(monkeypatch, confirm=False).measure(["t"], now=0.0)
    assert (row.log_end, row.lag) == (5, 5)


def test_lag_confirms_the_end_with_a_fetch_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def fetched(conn: Any, listed: Any, timeout: float = 15.0) -> dict[Any, Any]:
        seen.append((conn, dict(listed)))
        return {tp: end + 2 for tp, end in listed.items()}

    monkeypatch.setattr(offsets, "fetched_end_offsets", fetched)
    [row] = _probe(monkeypatch, confirm=True).measure(["t"], now=0.0)
    assert (row.log_end, row.lag) == (7, 7)
    assert seen == [(KafkaConnection("b:9092"), {("t", 0): 5})]


async def _highwaters(monkeypatch: pytest.MonkeyPatch, confirm: bool) -> Any:
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from faust.types import TP

    tp = TP("app-leads-changelog", 0)

    async def listed(self: Any, *partitions: Any) -> dict[Any, int]:
        return {tp: 5}

    monkeypatch.setattr(faust_aiokafka.Consumer, "highwaters", listed)
    settings = Settings(kafka_bootstrap="127.0.0.1:1", kafka_confirm_end_offsets=confirm)
    app = create_app(settings)
    return await app.consumer.highwaters(tp)


async def test_recovery_uses_the_listed_end_without_a_fetch_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(offsets, "fetched_end_offsets", _no_fetch)
    ends = await _highwaters(monkeypatch, confirm=False)
    assert list(ends.values()) == [5]


async def test_recovery_confirms_the_end_with_a_fetch_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []

    def fetched(conn: Any, listed: Any, timeout: float = 15.0) -> dict[Any, Any]:
        calls.append(conn)
        return {tp: 9 for tp in listed}

    monkeypatch.setattr(offsets, "fetched_end_offsets", fetched)
    ends = await _highwaters(monkeypatch, confirm=True)
    assert list(ends.values()) == [9]
    assert calls == [KafkaConnection("127.0.0.1:1")]
