"""Configuration: one frozen settings object read from ``LEADSTREAM_*`` environment variables.

The entry point reads it once (:func:`load_settings`) and passes it down; nothing else reads the
environment. Every variable is listed, with its default, in README.md ("Configuration").
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.domain.mapping import DEFAULT_STAGE_MAP, parse_stage_map
from streams.domain.types import ConsentPolicy, Rules

DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


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
        1, ge=1, description="Replication factor for topics Leadstream creates."
    )
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb://.")
    data_dir: Path = Field(
        Path("/tmp/leadstream"),  # noqa: S108 - per-pod scratch; the chart mounts a volume
        description="Faust data directory (RocksDB, state).",
    )
    session_timeout: float = Field(10.0, description="Consumer group session timeout, seconds.")
    heartbeat_interval: float = Field(1.0, description="Consumer heartbeat interval, seconds.")

    # Schema registry
    schema_registry_url: str = Field(
        "http://localhost:8081", description="Confluent-compatible registry."
    )
    schema_dir: Path = Field(DEFAULT_SCHEMA_DIR, description="Folder of the .avsc files.")

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

    # Rules
    stage_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_STAGE_MAP)
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
    agent_batch_within: float = Field(
        0.05, gt=0, description="Seconds an agent waits to fill a batch before processing it."
    )

    # Delivery
    delivery_linger: float = Field(1.0, ge=0, description="Seconds a batch may wait to fill up.")
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

    @field_validator("stage_map", mode="before")
    @classmethod
    def _parse_stage_map(cls, value: Any) -> dict[str, str]:
        if isinstance(value, str):
            return parse_stage_map(value)
        if isinstance(value, dict):
            return parse_stage_map(json.dumps(value))
        msg = "LEADSTREAM_STAGE_MAP must be a JSON object of status -> event name"
        raise ValueError(msg)

    def rules(self) -> Rules:
        """Return the pure core's rules derived from these settings."""
        return Rules(
            stage_map=self.stage_map,
            consent_policy=self.consent_policy,
            crm_routing=bool(self.tiktok_crm_event_set_id),
            pending_wait=self.pending_wait,
            ledger_retention=self.ledger_retention,
            lead_retention=self.lead_retention,
            input_dedup_window=self.input_dedup_window,
        )

    def input_topics(self) -> dict[str, str]:
        """Return the input topic names by record name."""
        return {
            "FormSubmitted": self.topic_form_submitted,
            "BookingCreated": self.topic_booking_created,
            "LeadStatusChanged": self.topic_lead_status_changed,
        }


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)
