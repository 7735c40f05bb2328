"""Secured Kafka for real: the worker and the operator commands through SASL_SSL and mTLS.

The session's Apache Kafka opens a ``SASL_SSL`` listener (SCRAM users created at storage-format
time) and an ``SSL`` listener that requires a client certificate, on a CA the test generated
(:mod:`streams.local.pki`). Every client Leadstream builds (the Faust app, the librdkafka producer,
admin, lag, dead-letters, produce) goes through the one connection object, so one end-to-end
run per listener covers them all. Bad configuration fails fast with one line naming the setting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from streams.local.broker import free_port
from streams.local.registry.server import RegistryServer
from streams.local.stack import LocalStack
from tests.conftest import Names
from tests.integration.helpers import form, produce, status, wait_events

WRONG_PASSWORD = "not-the-password-3f9a"  # noqa: S105 - a deliberately wrong test password
REGISTRY_AUTH = ("registry-user", "registry-pass-7c1e")


@pytest.fixture(autouse=True)
def _kafka_only(stack: LocalStack) -> None:
    if stack.broker.kind != "kafka" or stack.broker.sasl_ssl is None:
        pytest.skip("secured listeners need the Apache Kafka broker (Tansu fallback in use)")


def sasl_env(stack: LocalStack, mechanism: str = "SCRAM-SHA-512", **extra: str) -> dict[str, str]:
    broker = stack.broker
    assert broker.sasl_ssl is not None
    assert broker.pki is not None
    return {
        "LEADSTREAM_KAFKA_BOOTSTRAP": broker.sasl_ssl.bootstrap,
        "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LEADSTREAM_KAFKA_SASL_MECHANISM": mechanism,
        "LEADSTREAM_KAFKA_SASL_USERNAME": broker.scram_user,
        "LEADSTREAM_KAFKA_SASL_PASSWORD": broker.scram_password,
        "LEADSTREAM_KAFKA_SSL_CA_LOCATION": str(broker.pki.ca_cert),
        **extra,
    }


def mtls_env(stack: LocalStack, **extra: str) -> dict[str, str]:
    broker = stack.broker
    assert broker.mtls is not None
    assert broker.pki is not None
    return {
        "LEADSTREAM_KAFKA_BOOTSTRAP": broker.mtls.bootstrap,
        "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "LEADSTREAM_KAFKA_SSL_CA_LOCATION": str(broker.pki.ca_cert),
        "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION": str(broker.pki.client_cert),
        # The encrypted copy of the client key, so the key password path is exercised too.
        "LEADSTREAM_KAFKA_SSL_KEY_LOCATION": str(broker.pki.client_key_encrypted),
        "LEADSTREAM_KAFKA_SSL_KEY_PASSWORD": broker.pki.client_key_password,
        **extra,
    }


@pytest.fixture(scope="module")
def secured_registry(stack: LocalStack) -> Iterator[RegistryServer]:
    """A registry double that serves HTTPS (the broker's CA) and requires basic auth."""
    pki = stack.broker.pki
    assert pki is not None
    server = RegistryServer(
        basic_auth=REGISTRY_AUTH, certfile=pki.server_cert, keyfile=pki.server_key
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("listener", ["sasl_ssl", "mtls"])
def test_worker_and_commands_work_through_a_secured_listener(
    stack: LocalStack, names: Names, listener: str, secured_registry: RegistryServer
) -> None:
    """SASL_SSL also goes through an HTTPS registry with basic auth; mTLS through the plain one."""
    secured = sasl_env(stack) if listener == "sasl_ssl" else mtls_env(stack)
    env = {**names.env(), **secured}
    if listener == "sasl_ssl":
        assert stack.broker.pki is not None
        assert secured_registry.url.startswith("https://")
        env |= {
            "LEADSTREAM_SCHEMA_REGISTRY_URL": secured_registry.url,
            "LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH": ":".join(REGISTRY_AUTH),
            "LEADSTREAM_SCHEMA_REGISTRY_CA_LOCATION": str(stack.broker.pki.ca_cert),
        }
    p = names.prefix
    worker = stack.start_worker(p, **env)
    try:
        worker.wait_ready(timeout=120)
        produce(stack, env, names.form, form(p, 1), form(p, 2))
        produce(stack, env, names.status, status(p, 1, "c1", "Qualified"))
        produce(stack, env, names.status, status(p, 2, "c2", "Won", value=120.0, currency="EUR"))
        events = wait_events(stack, p, 2, worker, timeout=90)
        lag = stack.run_cli("lag", "--json", **env)
        dead = stack.run_cli("dead-letters", "--json", **env)
        log = worker.log_text()
    finally:
        worker.stop()
    assert sorted(e["event_id"].split(":")[0] for e in events) == [f"{p}-evt-1", f"{p}-evt-2"]
    assert lag.returncode == 0, lag.stderr
    rows = json.loads(lag.stdout)
    assert rows, "lag through the secured listener listed no partition"
    assert {row["topic"] for row in rows} >= {names.form, names.status}
    assert dead.returncode == 0, dead.stderr
    if listener == "sasl_ssl":
        assert secured_registry.registry.subjects(), "the worker never used the secured registry"
    for secret in (
        stack.broker.scram_password,
        stack.broker.pki.client_key_password,
        REGISTRY_AUTH[1],
    ):
        assert secret not in log
        assert secret not in lag.stdout + lag.stderr + dead.stdout + dead.stderr


def test_scram_sha_256_user_works_too(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), **sasl_env(stack, mechanism="SCRAM-SHA-256")}
    result = stack.run_cli(
        "produce", names.form, "-", stdin=json.dumps(form(names.prefix, 1)), **env
    )
    assert result.returncode == 0, result.stderr


def _fails_fast(
    stack: LocalStack, env: dict[str, str], *names_in_message: str, command: str = "worker"
) -> str:
    started = time.monotonic()
    result = stack.run_cli(command, LEADSTREAM_KAFKA_CONNECT_TIMEOUT="8", **env)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert elapsed < 40, f"{command} took {elapsed:.0f}s to fail"
    assert "Traceback" not in output, output[-2000:]
    for name in names_in_message:
        assert name in output, output[-2000:]
    assert stack.broker.scram_password not in output
    assert WRONG_PASSWORD not in output
    return output


@pytest.mark.parametrize("command", ["worker", "lag"])
def test_wrong_password_fails_fast_naming_the_setting(
    stack: LocalStack, names: Names, command: str
) -> None:
    env = {**names.env(), **sasl_env(stack, LEADSTREAM_KAFKA_SASL_PASSWORD=WRONG_PASSWORD)}
    out = _fails_fast(stack, env, "LEADSTREAM_KAFKA_SASL_PASSWORD", command=command)
    assert stack.broker.sasl_ssl is not None
    assert stack.broker.sasl_ssl.bootstrap in out


def test_unknown_mechanism_fails_fast(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), **sasl_env(stack, LEADSTREAM_KAFKA_SASL_MECHANISM="SCRAM-SHA-1024")}
    _fails_fast(stack, env, "LEADSTREAM_KAFKA_SASL_MECHANISM")


def test_missing_ca_file_fails_fast(stack: LocalStack, names: Names) -> None:
    env = {
        **names.env(),
        **sasl_env(stack, LEADSTREAM_KAFKA_SSL_CA_LOCATION="/nonexistent/ca.pem"),
    }
    _fails_fast(stack, env, "LEADSTREAM_KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")


def test_tls_to_a_plaintext_port_fails_fast(stack: LocalStack, names: Names) -> None:
    env = {
        **names.env(),
        **mtls_env(stack, LEADSTREAM_KAFKA_BOOTSTRAP=stack.broker.bootstrap),
    }
    out = _fails_fast(stack, env, "LEADSTREAM_KAFKA_SECURITY_PROTOCOL")
    assert stack.broker.bootstrap in out


def test_mtls_without_a_client_certificate_fails_fast(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), **mtls_env(stack)}
    del env["LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION"]
    del env["LEADSTREAM_KAFKA_SSL_KEY_LOCATION"]
    del env["LEADSTREAM_KAFKA_SSL_KEY_PASSWORD"]
    _fails_fast(stack, env, "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION")


def test_unreachable_bootstrap_fails_fast(stack: LocalStack, names: Names) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    env = {**names.env(), "LEADSTREAM_KAFKA_BOOTSTRAP": nowhere}
    out = _fails_fast(stack, env, "LEADSTREAM_KAFKA_BOOTSTRAP")
    assert nowhere in out


def test_a_typo_in_a_variable_stops_the_start(stack: LocalStack, names: Names) -> None:
    env = {**names.env(), **sasl_env(stack)}
    env["LEADSTREAM_KAFKA_SASL_PASWORD"] = env.pop("LEADSTREAM_KAFKA_SASL_PASSWORD")
    out = _fails_fast(stack, env, "LEADSTREAM_KAFKA_SASL_PASWORD", "LEADSTREAM_KAFKA_SASL_PASSWORD")
    assert len([line for line in out.splitlines() if line.strip()]) <= 3, out
