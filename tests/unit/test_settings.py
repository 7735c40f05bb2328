"""Settings: defaults, LEADSTREAM_* parsing, secrets, rules."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.domain.mapping import DEFAULT_STAGE_MAP
from streams.domain.types import ConsentPolicy, Rules
from streams.settings import DEFAULT_SCHEMA_DIR, Settings, load_settings

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LEADSTREAM_"):
            monkeypatch.delenv(name)


def _error_locs(exc: ValidationError) -> list[tuple[object, ...]]:
    return [tuple(e["loc"]) for e in exc.errors()]


def test_defaults() -> None:
    s = load_settings()

    assert s.kafka_bootstrap == "localhost:9092"
    assert s.schema_registry_url == "http://localhost:8081"
    assert s.tiktok_api_url == "https://business-api.tiktok.com"
    assert s.tiktok_access_token is None
    assert s.tiktok_pixel_code is None
    assert s.tiktok_crm_event_set_id is None
    assert s.tiktok_test_event_code is None
    assert s.web_port == 6066
    assert s.app_id == "leadstream"
    assert s.stage_map == dict(DEFAULT_STAGE_MAP)
    assert s.consent_policy is ConsentPolicy.GRANTED_ONLY
    assert s.pending_wait == timedelta(hours=24)
    assert s.lead_retention == timedelta(days=90)
    assert s.ledger_retention == timedelta(days=90)
    assert s.input_dedup_window == timedelta(days=90)
    assert s.retry_horizon == timedelta(hours=3)
    assert s.delivery_batch_max == 1000
    assert s.delivery_linger == 1.0
    assert s.schema_dir == DEFAULT_SCHEMA_DIR == REPO_SCHEMAS
    assert (s.schema_dir / "form_submitted.avsc").is_file()


def test_default_topic_names_match_the_contract() -> None:
    s = Settings()
    assert s.input_topics() == {
        "FormSubmitted": "leads.form-submitted",
        "BookingCreated": "leads.booking-created",
        "LeadStatusChanged": "crm.lead-status-changed",
    }
    assert s.topic_conversions == "leadstream.conversions"
    assert s.topic_deliveries == "leadstream.deliveries"
    assert s.topic_dead_letter == "leadstream.dead-letter"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_BOOTSTRAP", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("LEADSTREAM_WEB_PORT", "9100")
    monkeypatch.setenv("LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED", "hubspot.stages")
    monkeypatch.setenv("LEADSTREAM_TIKTOK_TIMEOUT", "2.5")

    s = Settings()

    assert s.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert s.web_port == 9100
    assert s.input_topics()["LeadStatusChanged"] == "hubspot.stages"
    assert s.tiktok_timeout == 2.5


def test_overrides_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_APP_ID", "from-env")
    assert load_settings(app_id="explicit").app_id == "explicit"
    assert load_settings().app_id == "from-env"


def test_variables_without_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "elsewhere:9092")
    assert Settings().kafka_bootstrap == "localhost:9092"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.app_id = "changed"  # type: ignore[misc]


# --- stage map --------------------------------------------------------------------------------


def test_stage_map_json_with_case_insensitive_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LEADSTREAM_STAGE_MAP",
        '{" Qualified ": "QualifiedLead", "MQL": "Lead", "Closed Won": " Purchase "}',
    )

    s = Settings()

    assert s.stage_map == {"qualified": "QualifiedLead", "mql": "Lead", "closed won": "Purchase"}
    assert s.rules().stage_map == s.stage_map


@pytest.mark.parametrize("text", ["{not json", "[]", '{"won": 5}', '{"a": "X", "A": "Y"}'])
def test_bad_stage_map_names_the_field(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP", text)

    with pytest.raises(ValidationError) as info:
        Settings()

    assert _error_locs(info.value) == [("stage_map",)]
    assert "stage map" in info.value.errors()[0]["msg"]


def test_bad_stage_map_json_message_is_specific(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP", '{"won": "Purchase",}')
    with pytest.raises(ValidationError, match="stage map is not valid JSON"):
        Settings()


def test_stage_map_as_dict_override_is_normalised() -> None:
    assert load_settings(stage_map={"SQL ": "QualifiedLead"}).stage_map == {"sql": "QualifiedLead"}


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT24H", timedelta(hours=24)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P7D", timedelta(days=7)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("01:00:00", timedelta(hours=1)),
    ],
)
def test_durations(monkeypatch: pytest.MonkeyPatch, text: str, expected: timedelta) -> None:
    monkeypatch.setenv("LEADSTREAM_PENDING_WAIT", text)
    monkeypatch.setenv("LEADSTREAM_RETRY_HORIZON", text)
    s = Settings()
    assert s.pending_wait == expected
    assert s.retry_horizon == expected
    assert s.rules().pending_wait == expected


def test_durations_as_numbers_in_code_are_seconds() -> None:
    assert load_settings(pending_wait=3600).pending_wait == timedelta(hours=1)
    assert load_settings(retry_horizon=90.5).retry_horizon == timedelta(seconds=90.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3600", timedelta(hours=1)),
        ("90.5", timedelta(seconds=90.5)),
        ("86400", timedelta(days=1)),
    ],
)
def test_durations_in_seconds_from_env(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: timedelta
) -> None:
    """README: "Durations accept seconds or ISO 8601"; env values are always strings."""
    monkeypatch.setenv("LEADSTREAM_PENDING_WAIT", text)
    monkeypatch.setenv("LEADSTREAM_LEAD_RETENTION", text)
    s = Settings()
    assert s.pending_wait == expected
    assert s.lead_retention == expected


@pytest.mark.parametrize("text", ["inf", "1e20"])
def test_huge_duration_is_a_validation_error(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("LEADSTREAM_PENDING_WAIT", text)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _error_locs(info.value) == [("pending_wait",)]


def test_bad_duration_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_LEDGER_RETENTION", "ninety days")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _error_locs(info.value) == [("ledger_retention",)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADSTREAM_TIKTOK_TIMEOUT", "0"),
        ("LEADSTREAM_DELIVERY_BATCH_MAX", "1001"),
        ("LEADSTREAM_DELIVERY_BATCH_MAX", "0"),
        ("LEADSTREAM_WEB_PORT", "70000"),
        ("LEADSTREAM_TOPIC_PARTITIONS", "0"),
        ("LEADSTREAM_EXPIRY_INTERVAL", "-1"),
    ],
)
def test_out_of_range_numbers_are_rejected(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _error_locs(info.value) == [(name.removeprefix("LEADSTREAM_").lower(),)]


# --- consent policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("granted-only", ConsentPolicy.GRANTED_ONLY), ("unless-denied", ConsentPolicy.UNLESS_DENIED)],
)
def test_consent_policy(
    monkeypatch: pytest.MonkeyPatch, text: str, expected: ConsentPolicy
) -> None:
    monkeypatch.setenv("LEADSTREAM_CONSENT_POLICY", text)
    s = Settings()
    assert s.consent_policy is expected
    assert s.rules().consent_policy is expected


@pytest.mark.parametrize("text", ["always", "GRANTED", "granted_only", ""])
def test_bad_consent_policy(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("LEADSTREAM_CONSENT_POLICY", text)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _error_locs(info.value) == [("consent_policy",)]


# --- secrets ----------------------------------------------------------------------------------


def test_access_token_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "tt-live-7f3a9c1e5b"  # noqa: S105 - a test value, not a credential
    monkeypatch.setenv("LEADSTREAM_TIKTOK_ACCESS_TOKEN", token)

    s = Settings()

    assert isinstance(s.tiktok_access_token, SecretStr)
    assert s.tiktok_access_token.get_secret_value() == token
    assert token not in repr(s)
    assert token not in str(s)
    assert token not in repr(s.tiktok_access_token)
    assert token not in s.model_dump_json()


# --- rules ------------------------------------------------------------------------------------


def test_rules_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP", '{"Won": "Purchase"}')
    monkeypatch.setenv("LEADSTREAM_CONSENT_POLICY", "unless-denied")
    monkeypatch.setenv("LEADSTREAM_PENDING_WAIT", "PT2H")
    monkeypatch.setenv("LEADSTREAM_LEDGER_RETENTION", "P30D")
    monkeypatch.setenv("LEADSTREAM_LEAD_RETENTION", "P60D")
    monkeypatch.setenv("LEADSTREAM_INPUT_DEDUP_WINDOW", "P10D")
    monkeypatch.setenv("LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID", "CRMSET1")

    rules = Settings().rules()

    assert rules == Rules(
        stage_map={"won": "Purchase"},
        consent_policy=ConsentPolicy.UNLESS_DENIED,
        crm_routing=True,
        pending_wait=timedelta(hours=2),
        ledger_retention=timedelta(days=30),
        lead_retention=timedelta(days=60),
        input_dedup_window=timedelta(days=10),
    )


def test_rules_without_crm_event_set_do_not_route_to_crm(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().rules().crm_routing is False
    monkeypatch.setenv("LEADSTREAM_TIKTOK_CRM_EVENT_SET_ID", "")
    assert Settings().rules().crm_routing is False
