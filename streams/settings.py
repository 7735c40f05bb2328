"""Configuration: one frozen settings object read from ``LEADSTREAM_*`` environment variables.

The entry point reads it once (:func:`load_settings`) and passes it down; nothing else reads the
environment. Every variable is listed, with its default, in README.md ("Configuration").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.connection import KafkaConnection
from streams.domain.mapping import DEFAULT_STAGE_MAP_CRM, DEFAULT_STAGE_MAP_WEB, parse_stage_map
from streams.domain.types import ConsentPolicy, Rules
from streams.errors import ConfigError
from streams.meta.payload import DEFAULT_STAGE_MAP_META

ENV_PREFIX = "LEADSTREAM_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_GRAPH_VERSION = re.compile(r"v\d{1,3}\.\d{1,3}")


def _env(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _one_of(field: str, value: Any, allowed: tuple[str, ...]) -> Any:
    """Upper-case ``value`` and check it is one of ``allowed``, naming the variable if not."""
    if not isinstance(value, str):
        return value
    upper = value.strip().upper()
    if upper not in allowed:
        msg = f"{_env(field)}={value!r} is not one of {', '.join(allowed)}"
        raise ValueError(msg)
    return upper


class Settings(BaseSettings):
    """All of Leadstream's settings; each field is the environment variable without its prefix."""

    model_config = SettingsConfigDict(env_prefix="LEADSTREAM_", frozen=True, extra="ignore")

    # Kafka
    kafka_bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers.")
    app_id: str = Field(
        "leadstream", description="Faust app id: consumer group and prefix of internal topics."
    )
    topic_form_submitted: str = "leads.form-submitted"
    topic_booking_created: str = "leads.booking-created"
    topic_lead_status_changed: str = "crm.lead-status-changed"
    topic_conversions: str = "leadstream.conversions"
    topic_deliveries: str = "leadstream.deliveries"
    topic_dead_letter: str = "leadstream.dead-letter"
    topic_partitions: int = Field(4, ge=1, description="Partitions for topics Leadstream creates.")
    topic_replication: int = Field(
        3, ge=1, description="Replication factor for topics Leadstream creates."
    )
    allow_low_replication: bool = Field(
        False, description="Start without a warning when topic_replication is below 2."
    )
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb://.")
    data_dir: Path = Field(
        Path("/tmp/leadstream"),  # noqa: S108 - per-pod scratch; the chart mounts a volume
        description="Faust data directory (RocksDB, state).",
    )
    session_timeout: float = Field(10.0, description="Consumer group session timeout, seconds.")
    heartbeat_interval: float = Field(1.0, description="Consumer heartbeat interval, seconds.")

    # Kafka connection security (one object builds every client: :meth:`kafka_connection`)
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* protocols)."
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates."
    )
    kafka_ssl_certificate_location: Path | None = Field(
        None, description="PEM client certificate (mTLS)."
    )
    kafka_ssl_key_location: Path | None = Field(None, description="PEM client key (mTLS).")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = Field(
        True, description="Verify that the broker's certificate names the host connected to."
    )
    kafka_connect_timeout: float = Field(
        15.0, gt=0, description="Seconds the start-up connection check waits for the broker."
    )
    kafka_fetch_max_wait: float = Field(
        0.1,
        gt=0,
        le=30,
        description="Seconds the broker may hold a consumer fetch open waiting for records "
        "(Faust fixes 1.5).",
    )
    kafka_confirm_end_offsets: bool = Field(
        False,
        description="Confirm listed end offsets with a fetch (brokers with short ListOffsets).",
    )

    # Schema registry
    schema_registry_url: str = Field(
        "http://localhost:8081", description="Confluent-compatible registry."
    )
    schema_dir: Path | None = Field(
        None, description="Folder of the .avsc files; unset: the schemas shipped in the package."
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        None, description="``user:password`` for a registry behind basic auth."
    )
    schema_registry_ca_location: Path | None = Field(
        None, description="PEM CA file for an https:// registry."
    )

    # TikTok Events API
    tiktok_api_url: str = "https://business-api.tiktok.com"
    tiktok_access_token: SecretStr | None = None
    tiktok_pixel_code: str | None = None
    tiktok_crm_event_set_id: str | None = None
    tiktok_test_event_code: str | None = None
    fallback_page_url: str | None = Field(
        None, description="page.url for web conversions without a page (sent without their form)."
    )
    tiktok_timeout: float = Field(10.0, gt=0, description="Seconds per Events API request.")

    # Meta Conversions API (a second destination: configured only with a dataset id and a token)
    meta_pixel_id: str | None = Field(None, description="Meta dataset (pixel) id.")
    meta_access_token: SecretStr | None = None
    meta_api_url: str = Field("https://graph.facebook.com", description="Graph API base URL.")
    meta_api_version: str = Field("v25.0", description="Graph API version, e.g. v25.0.")
    meta_test_event_code: str | None = Field(
        None, description="Send every Meta event as a test event with this code."
    )
    meta_stage_map: Annotated[dict[str, str] | None, NoDecode] = Field(
        None,
        description="Status -> Meta event name (default qualified/sql -> QualifiedLead, "
        "won/closed_won -> Purchase).",
    )

    # Rules
    stage_map: Annotated[dict[str, str] | None, NoDecode] = Field(
        None, description="Status -> event for both routes, unless a per-route map is set."
    )
    stage_map_web: Annotated[dict[str, str] | None, NoDecode] = Field(
        None, description="Status -> event on the web route (wins over stage_map)."
    )
    stage_map_crm: Annotated[dict[str, str] | None, NoDecode] = Field(
        None, description="Status -> event on the CRM route (wins over stage_map)."
    )
    consent_policy: ConsentPolicy = ConsentPolicy.GRANTED_ONLY
    lead_retention: timedelta = timedelta(days=90)
    ledger_retention: timedelta = timedelta(days=90)
    input_dedup_window: timedelta = timedelta(days=90)
    pending_wait: timedelta = timedelta(hours=24)
    expiry_interval: float = Field(
        60.0, gt=0, description="Seconds between sweeps for expired waits."
    )

    agent_batch_max: int = Field(
        1000, ge=1, description="Input events an agent processes per batch (one flush each)."
    )
    agent_buffer_max: int = Field(
        4096,
        ge=1,
        description=(
            "Input events Faust may queue per topic (its stream_buffer_maxsize); past 80 % of it "
            "the worker stops fetching that queue's partitions until it drained."
        ),
    )
    agent_batch_within: float = Field(
        0.0,
        ge=0,
        description=(
            "Seconds an agent waits to fill a batch before processing it; 0: it takes what "
            "arrived while it worked on the previous batch."
        ),
    )

    # Delivery
    delivery_linger: float = Field(
        1.0,
        ge=0,
        description=(
            "Seconds a batch may wait to fill up; a part-full batch waits one more linger when "
            "the worker's backlog would fill it (conversions waiting, or inputs not yet "
            "processed), and up to two more while it keeps growing."
        ),
    )
    delivery_batch_max: int = Field(1000, ge=1, le=1000)
    retry_horizon: timedelta = timedelta(hours=3)
    retry_backoff_initial: float = Field(0.5, gt=0)
    retry_backoff_max: float = Field(60.0, gt=0)
    circuit_probe_interval: float = Field(
        30.0, gt=0, description="Seconds between auth probes while paused."
    )

    # Operations
    lag_interval: float = Field(15.0, gt=0, description="Seconds between consumer lag probes.")
    liveness_stall_seconds: float = Field(
        600.0, gt=0, description="Liveness fails when lag has not moved for this long."
    )
    web_port: int = Field(6066, ge=0, le=65535, description="Health and /metrics port.")
    web_host: str = "0.0.0.0"  # noqa: S104 - a pod must be reachable by its probes.
    log_level: str = "INFO"

    @field_validator(
        "lead_retention",
        "ledger_retention",
        "input_dedup_window",
        "pending_wait",
        "retry_horizon",
        mode="before",
    )
    @classmethod
    def _seconds_or_iso(cls, value: Any) -> Any:
        """Accept plain seconds ("3", "86400.5") as well as ISO 8601 durations ("PT24H")."""
        if isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                return value  # not a number: let pydantic parse ISO 8601
            try:
                return timedelta(seconds=seconds)
            except OverflowError as exc:
                msg = f"{value} seconds is not a usable duration"
                raise ValueError(msg) from exc
        return value

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _protocol(cls, value: Any) -> Any:
        return _one_of("kafka_security_protocol", value, get_args(SecurityProtocol))

    @field_validator("kafka_sasl_mechanism", mode="before")
    @classmethod
    def _mechanism(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return _one_of("kafka_sasl_mechanism", value, get_args(SaslMechanism))

    @model_validator(mode="after")
    def _connection_is_complete(self) -> Settings:
        """Reject a Kafka or registry connection that could never work, naming the variable."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            missing = [
                _env(name)
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if not _given(getattr(self, name))
            ]
            if missing:
                msg = f"LEADSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
                raise ValueError(msg)
        cert, key = self.kafka_ssl_certificate_location, self.kafka_ssl_key_location
        if cert is not None and key is None:
            msg = (
                "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION is set without "
                "LEADSTREAM_KAFKA_SSL_KEY_LOCATION (a client certificate needs its key)"
            )
            raise ValueError(msg)
        if key is not None and cert is None:
            msg = (
                "LEADSTREAM_KAFKA_SSL_KEY_LOCATION is set without "
                "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION (a client key needs its certificate)"
            )
            raise ValueError(msg)
        if self.kafka_ssl_key_password is not None and key is None:
            msg = (
                "LEADSTREAM_KAFKA_SSL_KEY_PASSWORD is set without LEADSTREAM_KAFKA_SSL_KEY_LOCATION"
            )
            raise ValueError(msg)
        if protocol in ("SSL", "SASL_SSL"):
            for name in (
                "kafka_ssl_ca_location",
                "kafka_ssl_certificate_location",
                "kafka_ssl_key_location",
            ):
                _check_readable(name, getattr(self, name))
        _check_readable("schema_registry_ca_location", self.schema_registry_ca_location)
        auth = self.schema_registry_basic_auth
        if auth is not None and ":" not in auth.get_secret_value():
            msg = "LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH must be user:password"
            raise ValueError(msg)
        return self

    @field_validator("pending_wait")
    @classmethod
    def _wait_not_negative(cls, value: timedelta) -> timedelta:
        """Reject a negative wait for the form (0 sends at once with the input's own keys)."""
        if value < timedelta(0):
            msg = f"must not be negative (got {value.total_seconds():g} seconds)"
            raise ValueError(msg)
        return value

    @field_validator("ledger_retention")
    @classmethod
    def _ledger_kept(cls, value: timedelta) -> timedelta:
        """Reject 0: the conversion ledger is what sends each conversion once."""
        if value <= timedelta(0):
            msg = (
                f"must be more than 0 (got {value.total_seconds():g} seconds): the ledger is "
                "what keeps a conversion from being sent twice"
            )
            raise ValueError(msg)
        return value

    @field_validator("retry_backoff_max")
    @classmethod
    def _backoff_max_not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        """Reject a maximum below the initial delay: the backoff grows up to the maximum."""
        initial = info.data.get("retry_backoff_initial")
        if isinstance(initial, float) and value < initial:
            msg = f"{value:g} is less than LEADSTREAM_RETRY_BACKOFF_INITIAL ({initial:g})"
            raise ValueError(msg)
        return value

    @field_validator("meta_api_version")
    @classmethod
    def _graph_version(cls, value: str) -> str:
        """Accept ``v25.0`` (and ``25.0``, given a ``v``); reject anything else."""
        text = value.strip()
        text = text if text.startswith("v") else f"v{text}"
        if not _GRAPH_VERSION.fullmatch(text):
            msg = f"{value!r} is not a Graph API version like v25.0"
            raise ValueError(msg)
        return text

    @model_validator(mode="after")
    def _meta_is_complete(self) -> Settings:
        """Reject a dataset id without a token, or the reverse: a mistake, not 'Meta off'."""
        pixel, token = _given(self.meta_pixel_id), _given(self.meta_access_token)
        if pixel and not token:
            msg = "LEADSTREAM_META_PIXEL_ID is set without LEADSTREAM_META_ACCESS_TOKEN"
            raise ValueError(msg)
        if token and not pixel:
            msg = "LEADSTREAM_META_ACCESS_TOKEN is set without LEADSTREAM_META_PIXEL_ID"
            raise ValueError(msg)
        return self

    def meta_configured(self) -> bool:
        """Tell whether the Meta destination is on: both a dataset id and a token are set."""
        return _given(self.meta_pixel_id) and _given(self.meta_access_token)

    def meta_stage_map_or_default(self) -> dict[str, str]:
        """Return ``LEADSTREAM_META_STAGE_MAP``, else Meta's default stage map."""
        return _first_map(self.meta_stage_map, DEFAULT_STAGE_MAP_META)

    @field_validator("stage_map", "stage_map_web", "stage_map_crm", "meta_stage_map", mode="before")
    @classmethod
    def _parse_stage_map(cls, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_stage_map(value)
        if isinstance(value, dict):
            return parse_stage_map(json.dumps(value))
        msg = "a stage map must be a JSON object of status -> event name"
        raise ValueError(msg)

    def web_stage_map(self) -> dict[str, str]:
        """Return the web route's stage map: its own, else ``stage_map``, else the default."""
        return _first_map(self.stage_map_web, self.stage_map, DEFAULT_STAGE_MAP_WEB)

    def crm_stage_map(self) -> dict[str, str]:
        """Return the CRM route's stage map: its own, else ``stage_map``, else the default."""
        return _first_map(self.stage_map_crm, self.stage_map, DEFAULT_STAGE_MAP_CRM)

    def rules(self) -> Rules:
        """Return the pure core's rules derived from these settings."""
        return Rules(
            stage_map_web=self.web_stage_map(),
            stage_map_crm=self.crm_stage_map(),
            consent_policy=self.consent_policy,
            crm_routing=bool(self.tiktok_crm_event_set_id),
            pending_wait=self.pending_wait,
            ledger_retention=self.ledger_retention,
            lead_retention=self.lead_retention,
            input_dedup_window=self.input_dedup_window,
            stage_map_meta=self.meta_stage_map_or_default() if self.meta_configured() else None,
        )

    def kafka_connection(self) -> KafkaConnection:
        """Return the one Kafka connection every client of this worker or command is built from."""

        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=secret(self.kafka_sasl_password),
            ssl_ca_location=self.kafka_ssl_ca_location,
            ssl_certificate_location=self.kafka_ssl_certificate_location,
            ssl_key_location=self.kafka_ssl_key_location,
            ssl_key_password=secret(self.kafka_ssl_key_password),
            ssl_check_hostname=self.kafka_ssl_check_hostname,
        )

    def schema_registry_config(self) -> dict[str, str]:
        """Return the confluent ``SchemaRegistryClient`` configuration (url, auth, CA)."""
        conf = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth is not None:
            conf["basic.auth.user.info"] = self.schema_registry_basic_auth.get_secret_value()
        if self.schema_registry_ca_location is not None:
            conf["ssl.ca.location"] = str(self.schema_registry_ca_location)
        return conf


def _given(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


def _check_readable(field: str, path: Path | None) -> None:
    if path is None:
        return
    if not path.is_file():
        msg = f"{_env(field)}: no such file: {path}"
        raise ValueError(msg)
    if not os.access(path, os.R_OK):
        msg = f"{_env(field)}: cannot read {path} (permission denied)"
        raise ValueError(msg)


def known_variables() -> list[str]:
    """Every ``LEADSTREAM_*`` environment variable the settings read, sorted."""
    return sorted(_env(name) for name in Settings.model_fields)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Return the ``LEADSTREAM_*`` names in ``environ`` that are no setting (typos), sorted."""
    known = set(known_variables())
    return sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise :class:`ConfigError` naming unknown ``LEADSTREAM_*`` variables and the known ones.

    A misspelt variable (``LEADSTREAM_KAFKA_SASL_PASWORD``) would otherwise be ignored silently
    and the worker would start with a default in its place.
    """
    unknown = unknown_variables(environ)
    if unknown:
        msg = (
            f"unknown setting {', '.join(unknown)}; known settings: {', '.join(known_variables())}"
        )
        raise ConfigError(msg)


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first problem of a settings ``ValidationError``, naming the variable."""
    err = exc.errors()[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    loc = err.get("loc")
    if not loc:  # a check across settings: its message names the variables itself
        return message
    name = _env(str(loc[0]))
    return message if message.startswith(name) else f"{name}: {message}"


def _first_map(*maps: Mapping[str, str] | None) -> dict[str, str]:
    return next(dict(m) for m in maps if m is not None)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, with explicit overrides taking precedence.

    Unknown ``LEADSTREAM_*`` variables in the environment stop the start
    (:func:`check_environment`).
    """
    check_environment(os.environ)
    return Settings(**overrides)
