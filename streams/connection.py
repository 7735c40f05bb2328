"""The Kafka connection: one value that builds every Kafka client, and a start-up check of it.

:class:`KafkaConnection` is made from the settings (``Settings.kafka_connection()``) and gives
each client stack its configuration: :meth:`~KafkaConnection.librdkafka` for confluent-kafka
(producers, consumers, admin clients) and :meth:`~KafkaConnection.faust_credentials` for Faust's
aiokafka driver. Nothing else in Leadstream spells ``bootstrap.servers`` or a security option,
so a TLS or SASL setting cannot reach one client and miss another.

:func:`check_connection` connects once, within a bounded time, before a worker or a command that
needs Kafka starts. A wrong password, an unknown mechanism, TLS to a plaintext port or an
unreachable bootstrap then stops it with one line naming the setting and the broker
(:class:`~streams.errors.ConfigError`) instead of a hang, a stream of librdkafka log lines or a
traceback. :func:`diagnose` is the pure mapping from a librdkafka error to that line.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Producer

from streams.errors import ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

logger = logging.getLogger(__name__)

PROTOCOL = "LEADSTREAM_KAFKA_SECURITY_PROTOCOL"
BOOTSTRAP = "LEADSTREAM_KAFKA_BOOTSTRAP"
CREDENTIALS = "LEADSTREAM_KAFKA_SASL_USERNAME/LEADSTREAM_KAFKA_SASL_PASSWORD"
MECHANISM = "LEADSTREAM_KAFKA_SASL_MECHANISM"
CA = "LEADSTREAM_KAFKA_SSL_CA_LOCATION"
CHECK_HOSTNAME = "LEADSTREAM_KAFKA_SSL_CHECK_HOSTNAME"
CLIENT_CERT = "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION/LEADSTREAM_KAFKA_SSL_KEY_LOCATION"
KEY_PASSWORD = "LEADSTREAM_KAFKA_SSL_KEY_PASSWORD"  # noqa: S105 - a name


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where Kafka is and how to authenticate to it; secrets are plain strings, never printed."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True

    def __repr__(self) -> str:
        """Describe the connection without its secrets (a dataclass repr would show them)."""
        return f"KafkaConnection({self.describe()})"

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted (SSL or SASL_SSL)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with SASL (SASL_PLAINTEXT or SASL_SSL)."""
        return self.security_protocol.startswith("SASL_")

    def describe(self) -> str:
        """One line for logs: bootstrap, protocol, mechanism and user; never a password."""
        parts = [f"bootstrap {self.bootstrap}", f"protocol {self.security_protocol}"]
        if self.uses_sasl:
            parts.append(f"mechanism {self.sasl_mechanism}")
            parts.append(f"user {self.sasl_username}")
        if self.uses_tls and self.ssl_certificate_location is not None:
            parts.append(f"client certificate {self.ssl_certificate_location}")
        return ", ".join(parts)

    def librdkafka(self, **extra: Any) -> dict[str, Any]:
        """Return a confluent-kafka client configuration: the connection plus ``extra``.

        ``extra`` uses librdkafka's dotted names, passed as a mapping (``**{"group.id": g}``).
        Only the keys that apply to the security protocol are set.
        """
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password
        if self.uses_tls:
            if self.ssl_ca_location is not None:
                conf["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location is not None:
                conf["ssl.certificate.location"] = str(self.ssl_certificate_location)
            if self.ssl_key_location is not None:
                conf["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password is not None:
                conf["ssl.key.password"] = self.ssl_key_password
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        conf.update(extra)
        return conf

    def ssl_context(self) -> ssl.SSLContext:
        """Return the TLS context for Faust's aiokafka clients (CA, client certificate, hostname).

        Raises:
            ConfigError: a file cannot be loaded (not PEM, key does not match, wrong password).

        """
        try:
            context = ssl.create_default_context(
                cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None
            )
        except (OSError, ssl.SSLError) as exc:
            msg = f"{CA}: cannot load {self.ssl_ca_location} as a PEM CA file ({_why(exc)})"
            raise ConfigError(msg) from exc
        if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
            try:
                context.load_cert_chain(
                    str(self.ssl_certificate_location),
                    str(self.ssl_key_location),
                    password=self.ssl_key_password,
                )
            except (OSError, ssl.SSLError) as exc:
                msg = (
                    f"{CLIENT_CERT} (and {KEY_PASSWORD}): cannot load the client certificate "
                    f"and key ({_why(exc)})"
                )
                raise ConfigError(msg) from exc
        context.check_hostname = self.ssl_check_hostname
        if not self.ssl_check_hostname:
            # The certificate is still verified against the CA; only the name check is off.
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def faust_credentials(self) -> CredentialsT | None:
        """Return Faust's ``broker_credentials`` for this connection (None for PLAINTEXT).

        Faust's aiokafka driver passes the mechanism through to aiokafka, which speaks PLAIN,
        SCRAM-SHA-256 and SCRAM-SHA-512 (``faust.transport.drivers.aiokafka``,
        ``credentials_to_aiokafka_auth``).
        """
        import faust  # lazy: commands that never start Faust do not pay for importing it

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context() if self.uses_tls else None,
            )
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


def as_connection(conn: KafkaConnection | str) -> KafkaConnection:
    """Return ``conn``; a bare bootstrap string (a local test broker) is a PLAINTEXT connection."""
    return KafkaConnection(conn) if isinstance(conn, str) else conn


def _why(exc: BaseException) -> str:
    """Return the reason of an OS or TLS error, without the repr noise."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What a librdkafka error means for the configuration.

    Attributes:
        message: one line naming the setting(s) and the broker; no secret.
        decisive: True when waiting longer cannot help (authentication, TLS, protocol mismatch);
            False for errors that may clear up (a broker still starting, a DNS hiccup).

    """

    message: str
    decisive: bool


_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")  # librdkafka log lines start with their thread
_BROKER = re.compile(r"(?:[a-z_]+://)?(\[[^\]]+\]:\d+|[^\s/,]+:\d+)(?:/[\w-]+)?:")

_NOT_TLS = (
    "plaintext broker listener",  # librdkafka's own hint
    "wrong version number",
    "packet length too long",
    "unexpected eof",
    "record layer failure",
    "http request",
    "unknown protocol",
)


_CLIENT_CERT_REFUSED = ("certificate required", "bad certificate", "handshake failure")


def _broker_of(conn: KafkaConnection, reason: str) -> str:
    """Return the broker an error names (``sasl_ssl://host:9093/1: ...``), else the bootstrap."""
    match = _BROKER.search(reason)
    return match.group(1) if match else conn.bootstrap


def diagnose(conn: KafkaConnection, code: int, reason: str) -> Diagnosis | None:
    """Map a librdkafka error met while connecting to one line naming the setting and broker.

    Args:
        conn: the connection that was tried (its protocol and mechanism appear in the line).
        code: the ``KafkaError`` code (``KafkaError._AUTHENTICATION``, ``._SSL``, ...).
        reason: the error's text (``KafkaError.str()``).

    Returns:
        The diagnosis, or None when the error says nothing about the connection.

    """
    reason = _THREAD.sub("", reason)
    broker = _broker_of(conn, reason)
    text = reason.lower()
    if code == KafkaError._AUTHENTICATION:
        if "unsupported sasl mechanism" in text or "mechanism" in text and "not enabled" in text:
            return Diagnosis(
                f"the broker {broker} does not accept {MECHANISM}={conn.sasl_mechanism} "
                f"({_tail(reason)})",
                decisive=True,
            )
        if "ssl" in text and not conn.uses_sasl:
            return _ssl_diagnosis(conn, broker, reason)
        return Diagnosis(
            f"the broker {broker} rejected {CREDENTIALS} (SASL authentication failed, "
            f"mechanism {conn.sasl_mechanism})",
            decisive=True,
        )
    if code == KafkaError._SSL:
        return _ssl_diagnosis(conn, broker, reason)
    if code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        if conn.uses_tls and (
            "ssl handshake failed" in text
            or any(marker in text for marker in (*_NOT_TLS, *_CLIENT_CERT_REFUSED))
        ):
            return _ssl_diagnosis(conn, broker, reason)
        if "in state ssl_handshake" in text and "timed out" in text:
            return Diagnosis(
                f"the broker {broker} did not complete a TLS handshake: check {BOOTSTRAP} (a "
                f"plaintext port?) and {PROTOCOL}={conn.security_protocol} ({_tail(reason)})",
                decisive=True,
            )
        if (
            "security.protocol" in text
            or "requesting apiversion" in text
            or ("disconnected" in text and "in state apiversion_query" in text)
        ):
            return Diagnosis(
                f"the broker {broker} closed the connection during the handshake: check "
                f"{PROTOCOL}={conn.security_protocol} against the listener on that port "
                f"({_tail(reason)})",
                decisive=True,
            )
        return Diagnosis(
            f"cannot reach the broker {broker}: check {BOOTSTRAP} and "
            f"{PROTOCOL}={conn.security_protocol} ({_tail(reason)})",
            decisive=False,
        )
    if code == KafkaError._RESOLVE:
        return Diagnosis(
            f"cannot resolve the broker {broker}: check {BOOTSTRAP} ({_tail(reason)})",
            decisive=False,
        )
    if code in (KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT):
        return Diagnosis(
            f"the broker {broker} did not answer: check {BOOTSTRAP} and {PROTOCOL}",
            decisive=False,
        )
    if code in (
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    ):
        return Diagnosis(
            f"the broker {broker} refused {CREDENTIALS} ({_tail(reason)})", decisive=True
        )
    return None


def _ssl_diagnosis(conn: KafkaConnection, broker: str, reason: str) -> Diagnosis:
    text = reason.lower()
    if not conn.uses_tls:
        setting = f"{PROTOCOL}={conn.security_protocol}"
        return Diagnosis(
            f"the broker {broker} expects TLS: check {setting} ({_tail(reason)})", decisive=True
        )
    if any(marker in text for marker in _NOT_TLS):
        return Diagnosis(
            f"the broker {broker} does not speak TLS on that port: check {BOOTSTRAP} and "
            f"{PROTOCOL}={conn.security_protocol} ({_tail(reason)})",
            decisive=True,
        )
    if "hostname" in text or "ip address mismatch" in text or "host name" in text:
        return Diagnosis(
            f"the certificate of the broker {broker} does not name that host: check {BOOTSTRAP} "
            f"or {CHECK_HOSTNAME} ({_tail(reason)})",
            decisive=True,
        )
    if "certificate verify failed" in text or "unable to get local issuer" in text:
        return Diagnosis(
            f"the certificate of the broker {broker} is not signed by {CA} ({_tail(reason)})",
            decisive=True,
        )
    if any(marker in text for marker in _CLIENT_CERT_REFUSED):
        return Diagnosis(
            f"the broker {broker} refused the client certificate: check {CLIENT_CERT} "
            f"({_tail(reason)})",
            decisive=True,
        )
    return Diagnosis(
        f"TLS with the broker {broker} failed: check {CA}, {CLIENT_CERT} and "
        f"{PROTOCOL}={conn.security_protocol} ({_tail(reason)})",
        decisive=True,
    )


def _tail(reason: str, limit: int = 160) -> str:
    """Return librdkafka's reason without the broker prefix, on one line, bounded."""
    match = _BROKER.match(reason)
    tail = reason[match.end() :] if match else reason
    tail = " ".join(tail.split()).strip()
    return tail if len(tail) <= limit else tail[: limit - 3] + "..."


def config_error(conn: KafkaConnection, exc: KafkaException) -> ConfigError:
    """Turn librdkafka's refusal of a client configuration into a :class:`ConfigError`.

    librdkafka checks the TLS files when a client is created ("ssl.key.location failed: ...").
    """
    text = str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
    lowered = text.lower()
    if "ssl.ca" in lowered or "ca certificate" in lowered:
        setting = CA
    elif "key" in lowered and "password" in lowered or "bad decrypt" in lowered:
        setting = KEY_PASSWORD
    elif "ssl.key" in lowered and conn.ssl_key_password is not None:
        setting = f"{KEY_PASSWORD} (or {CLIENT_CERT})"  # a wrong password reads as "PEM lib"
    elif "ssl.key" in lowered or "ssl.certificate" in lowered or "private key" in lowered:
        setting = CLIENT_CERT
    elif "sasl" in lowered:
        setting = MECHANISM
    else:
        setting = PROTOCOL
    msg = f"{setting}: the Kafka client rejected the configuration ({_tail(text)})"
    return ConfigError(msg)


class _FailLog(logging.Logger):
    """Receives librdkafka's log lines; keeps the connection failures as transport errors."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        super().__init__("streams.connection.librdkafka", logging.DEBUG)
        self.propagate = False
        self._errors = errors

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Keep ``FAIL`` lines (librdkafka calls ``log(level, fmt, facility, name, text)``)."""
        if len(args) == 3 and args[0] == "FAIL":
            self._errors.append((KafkaError._TRANSPORT, str(args[2])))


def check_connection(conn: KafkaConnection, timeout: float = 15.0) -> None:
    """Connect to Kafka once and return when the cluster answers a metadata request.

    Returns as soon as a decisive error arrives (rejected credentials, TLS failure, protocol
    mismatch); otherwise waits up to ``timeout`` seconds for a broker to answer.

    Raises:
        ConfigError: one line naming the setting(s) and the broker, without secrets.

    """
    errors: list[tuple[int, str]] = []

    def on_error(err: KafkaError) -> None:
        errors.append((err.code(), err.str()))

    try:
        client = Producer(
            conn.librdkafka(
                **{
                    "error_cb": on_error,
                    # Connection failures that never reach the error callback (a disconnect
                    # during the handshake) are in librdkafka's FAIL log lines: read those too.
                    "logger": _FailLog(errors),
                    # Half the time: a TLS handshake a plaintext port never answers is reported.
                    "socket.connection.setup.timeout.ms": max(1000, int(timeout * 500)),
                    "reconnect.backoff.max.ms": 1000,
                }
            )
        )
    except KafkaException as exc:
        raise config_error(conn, exc) from None
    deadline = time.monotonic() + timeout
    last: Diagnosis | None = None  # the latest broker-specific reason
    summary: Diagnosis | None = None  # "1/1 brokers are down", "Failed to get metadata"
    seen = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                client.list_topics(timeout=max(0.1, min(1.0, remaining)))
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError):
                    summary = diagnose(conn, err.code(), err.str()) or summary
            else:
                logger.debug("connected to Kafka: %s", conn.describe())
                return
            client.poll(0)
            for code, reason in errors[seen:]:
                diagnosis = diagnose(conn, code, reason)
                if diagnosis is None:
                    continue
                if diagnosis.decisive:
                    raise ConfigError(diagnosis.message)
                if code in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT):
                    summary = diagnosis
                else:
                    last = diagnosis
            seen = len(errors)
            if time.monotonic() >= deadline:
                break
    finally:
        client.flush(0)
    last = last or summary
    if last is not None:
        msg = f"{last.message}; no answer within {timeout:g}s"
    else:
        msg = (
            f"no broker of {BOOTSTRAP}={conn.bootstrap} answered within {timeout:g}s "
            f"(check {PROTOCOL}={conn.security_protocol})"
        )
    raise ConfigError(msg)
