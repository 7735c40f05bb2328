"""Settings: defaults, LEADSTREAM_* parsing, secrets, rules."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from streams.connection import KafkaConnection
from streams.domain.mapping import DEFAULT_STAGE_MAP_CRM, DEFAULT_STAGE_MAP_WEB
from streams.domain.types import ConsentPolicy, Rules
from streams.errors import ConfigError
from streams.ops.cli import main
from streams.serde import contract
from streams.settings import (
    Settings,
    check_environment,
    describe_validation_error,
    known_variables,
    load_settings,
    unknown_variables,
)


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
    assert s.stage_map is None
    assert s.rules().stage_map_web == dict(DEFAULT_STAGE_MAP_WEB)
    assert s.rules().stage_map_crm == dict(DEFAULT_STAGE_MAP_CRM)
    assert s.consent_policy is ConsentPolicy.GRANTED_ONLY
    assert s.pending_wait == timedelta(hours=24)
    assert s.lead_retention == timedelta(days=90)
    assert s.ledger_retention == timedelta(days=90)
    assert s.input_dedup_window == timedelta(days=90)
    assert s.retry_horizon == timedelta(hours=3)
    assert s.delivery_batch_max == 1000
    assert s.delivery_linger == 1.0
    assert s.schema_dir is None  # the schemas shipped in the package


def test_schema_dir_is_an_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEADSTREAM_SCHEMA_DIR", str(tmp_path))
    assert Settings().schema_dir == tmp_path


def test_default_topic_names_match_the_contract() -> None:
    s = Settings()
    assert contract.topics_by_record(s) == {
        "FormSubmitted": "leads.form-submitted",
        "BookingCreated": "leads.booking-created",
        "LeadStatusChanged": "crm.lead-status-changed",
        "Conversion": "leadstream.conversions",
        "DeliveryReceipt": "leadstream.deliveries",
        "DeadLetter": "leadstream.dead-letter",
    }


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_BOOTSTRAP", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("LEADSTREAM_WEB_PORT", "9100")
    monkeypatch.setenv("LEADSTREAM_TOPIC_LEAD_STATUS_CHANGED", "hubspot.stages")
    monkeypatch.setenv("LEADSTREAM_TIKTOK_TIMEOUT", "2.5")

    s = Settings()

    assert s.kafka_bootstrap == "broker-1:9093,broker-2:9093"
    assert s.web_port == 9100
    assert contract.LEAD_STATUS_CHANGED.topic(s) == "hubspot.stages"
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
    assert s.rules().stage_map_web == s.stage_map
    assert s.rules().stage_map_crm == s.stage_map


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


def test_per_route_stage_maps_win_for_their_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP", '{"won": "Purchase"}')
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP_CRM", '{"SQL": "SalesQualified"}')

    rules = Settings().rules()

    assert rules.stage_map_web == {"won": "Purchase"}  # LEADSTREAM_STAGE_MAP: both routes...
    assert rules.stage_map_crm == {"sql": "SalesQualified"}  # ...unless the route has its own

    monkeypatch.delenv("LEADSTREAM_STAGE_MAP")
    monkeypatch.setenv("LEADSTREAM_STAGE_MAP_WEB", '{"qualified": "Contact"}')
    rules = Settings().rules()
    assert rules.stage_map_web == {"qualified": "Contact"}
    assert rules.stage_map_crm == {"sql": "SalesQualified"}


def test_default_stage_maps_per_route() -> None:
    rules = Settings().rules()
    assert rules.stage_map_web["qualified"] == "ApplicationApproval"
    assert rules.stage_map_web["sql"] == "ApplicationApproval"
    assert rules.stage_map_crm["qualified"] == "QualifiedLead"
    assert rules.stage_map_crm["sql"] == "QualifiedLead"
    for route in (rules.stage_map_web, rules.stage_map_crm):
        assert route["won"] == route["closed_won"] == "Purchase"


@pytest.mark.parametrize("name", ["LEADSTREAM_STAGE_MAP_WEB", "LEADSTREAM_STAGE_MAP_CRM"])
def test_bad_per_route_stage_map_names_its_field(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "{oops")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _error_locs(info.value) == [(name.removeprefix("LEADSTREAM_").lower(),)]


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
        stage_map_web={"won": "Purchase"},
        stage_map_crm={"won": "Purchase"},
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


# --- Kafka connection security (issue 12) -----------------------------------------------------


def _message(exc: ValidationError) -> str:
    return describe_validation_error(exc)


def _sasl_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    values = {
        "LEADSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LEADSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LEADSTREAM_KAFKA_SASL_USERNAME": "svc",
        "LEADSTREAM_KAFKA_SASL_PASSWORD": "s3cret",
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_connection_defaults_are_plaintext_and_replicated() -> None:
    s = Settings()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.kafka_sasl_mechanism is None
    assert s.kafka_ssl_check_hostname is True
    assert s.kafka_confirm_end_offsets is False
    assert s.kafka_connect_timeout == 15.0
    assert s.topic_replication == 3
    assert s.allow_low_replication is False
    assert s.kafka_connection() == KafkaConnection("localhost:9092")


def test_protocol_and_mechanism_accept_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    _sasl_env(
        monkeypatch,
        LEADSTREAM_KAFKA_SECURITY_PROTOCOL="sasl_plaintext",
        LEADSTREAM_KAFKA_SASL_MECHANISM="scram-sha-256",
    )
    s = Settings()
    assert s.kafka_security_protocol == "SASL_PLAINTEXT"
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert isinstance(s.kafka_sasl_password, SecretStr)
    assert "s3cret" not in repr(s)
    conn = s.kafka_connection()
    assert conn.sasl_password == "s3cret"  # noqa: S105 - test value
    assert conn.librdkafka()["sasl.mechanism"] == "SCRAM-SHA-256"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADSTREAM_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ],
)
def test_unknown_protocol_or_mechanism_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _sasl_env(monkeypatch, **{name: value})
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value).startswith(f"{name}={value!r} is not one of ")


@pytest.mark.parametrize(
    "missing",
    [
        "LEADSTREAM_KAFKA_SASL_MECHANISM",
        "LEADSTREAM_KAFKA_SASL_USERNAME",
        "LEADSTREAM_KAFKA_SASL_PASSWORD",
    ],
)
def test_sasl_needs_mechanism_username_and_password(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    _sasl_env(monkeypatch)
    monkeypatch.delenv(missing)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value) == (
        f"LEADSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs {missing}"
    )


@pytest.mark.parametrize(
    "name",
    [
        "LEADSTREAM_KAFKA_SSL_CA_LOCATION",
        "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION",
        "LEADSTREAM_KAFKA_SSL_KEY_LOCATION",
    ],
)
def test_tls_files_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    for each in (
        "LEADSTREAM_KAFKA_SSL_CA_LOCATION",
        "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION",
        "LEADSTREAM_KAFKA_SSL_KEY_LOCATION",
    ):
        path = tmp_path / each.lower()
        path.write_text("pem")
        monkeypatch.setenv(each, str(path))
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    Settings()  # all present: fine
    monkeypatch.setenv(name, str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value) == f"{name}: no such file: {tmp_path / 'missing.pem'}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_ca_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    ca.chmod(0)
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SSL_CA_LOCATION", str(ca))
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value).startswith("LEADSTREAM_KAFKA_SSL_CA_LOCATION: cannot read")


def test_an_unreadable_file_check_is_real(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The readability check itself (runs as root too: os.access is faked)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("LEADSTREAM_KAFKA_SSL_CA_LOCATION", str(ca))
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value) == (
        f"LEADSTREAM_KAFKA_SSL_CA_LOCATION: cannot read {ca} (permission denied)"
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION": "c"},
            "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION is set without "
            "LEADSTREAM_KAFKA_SSL_KEY_LOCATION (a client certificate needs its key)",
        ),
        (
            {"LEADSTREAM_KAFKA_SSL_KEY_LOCATION": "k"},
            "LEADSTREAM_KAFKA_SSL_KEY_LOCATION is set without "
            "LEADSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION (a client key needs its certificate)",
        ),
        (
            {"LEADSTREAM_KAFKA_SSL_KEY_PASSWORD": "pw"},
            "LEADSTREAM_KAFKA_SSL_KEY_PASSWORD is set without LEADSTREAM_KAFKA_SSL_KEY_LOCATION",
        ),
    ],
)
def test_client_certificate_key_and_password_come_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, given: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    for name, value in given.items():
        if name.endswith("_LOCATION"):
            (tmp_path / value).write_text("pem")
            value = str(tmp_path / value)
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value) == message
    assert "pw" not in _message(info.value)


def test_registry_auth_and_ca_reach_the_registry_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "registry-ca.pem"
    ca.write_text("pem")
    monkeypatch.setenv("LEADSTREAM_SCHEMA_REGISTRY_URL", "https://registry:8081")
    monkeypatch.setenv("LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH", "key:secret")
    monkeypatch.setenv("LEADSTREAM_SCHEMA_REGISTRY_CA_LOCATION", str(ca))
    s = Settings()
    assert "secret" not in repr(s)
    assert s.schema_registry_config() == {
        "url": "https://registry:8081",
        "basic.auth.user.info": "key:secret",
        "ssl.ca.location": str(ca),
    }
    assert Settings(schema_registry_basic_auth=None).schema_registry_config() == {
        "url": "https://registry:8081",
        "ssl.ca.location": str(ca),
    }


def test_registry_auth_must_be_user_colon_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH", "justakey")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _message(info.value) == "LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH must be user:password"


def test_unknown_variables_stop_the_start_with_the_known_names() -> None:
    environ = {
        "LEADSTREAM_KAFKA_SASL_PASWORD": "x",
        "LEADSTREAM_KAFKA_BOOTSTRAP": "b:9092",
        "PATH": "/bin",
        "DRILL_SCALE": "full",
    }
    assert unknown_variables(environ) == ["LEADSTREAM_KAFKA_SASL_PASWORD"]
    with pytest.raises(ConfigError) as info:
        check_environment(environ)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("unknown setting LEADSTREAM_KAFKA_SASL_PASWORD; known settings: ")
    assert "LEADSTREAM_KAFKA_SASL_PASSWORD" in text
    assert "x" not in text.split("known settings: ")[0].replace("LEADSTREAM_", "")
    check_environment({"LEADSTREAM_APP_ID": "a", "HOME": "/root"})  # all known: fine


def test_load_settings_checks_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_KAFKA_SASL_PASWORD", "x")
    with pytest.raises(ConfigError, match="LEADSTREAM_KAFKA_SASL_PASWORD"):
        load_settings()


def test_every_setting_is_a_known_variable() -> None:
    known = known_variables()
    assert "LEADSTREAM_KAFKA_SECURITY_PROTOCOL" in known
    assert "LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH" in known
    assert len(known) == len(Settings.model_fields)


def test_low_replication_warns_unless_allowed() -> None:
    from streams.runtime.worker import replication_warning

    assert replication_warning(Settings()) is None
    warning = replication_warning(Settings(topic_replication=1))
    assert warning is not None
    assert warning.startswith("LEADSTREAM_TOPIC_REPLICATION=1: ")
    assert replication_warning(Settings(topic_replication=1, allow_low_replication=True)) is None


# --- nonsense that would silently change behaviour is rejected at start ------------------------


@pytest.mark.parametrize(
    ("env", "name", "says"),
    [
        ({"LEADSTREAM_PENDING_WAIT": "-1"}, "LEADSTREAM_PENDING_WAIT", "negative"),
        ({"LEADSTREAM_PENDING_WAIT": "-PT1H"}, "LEADSTREAM_PENDING_WAIT", "negative"),
        ({"LEADSTREAM_LEDGER_RETENTION": "0"}, "LEADSTREAM_LEDGER_RETENTION", "sent twice"),
        ({"LEADSTREAM_LEDGER_RETENTION": "-5"}, "LEADSTREAM_LEDGER_RETENTION", "more than 0"),
        (
            {"LEADSTREAM_RETRY_BACKOFF_INITIAL": "10", "LEADSTREAM_RETRY_BACKOFF_MAX": "5"},
            "LEADSTREAM_RETRY_BACKOFF_MAX",
            "LEADSTREAM_RETRY_BACKOFF_INITIAL (10)",
        ),
        ({"LEADSTREAM_RETRY_BACKOFF_MAX": "0.1"}, "LEADSTREAM_RETRY_BACKOFF_MAX", "(0.5)"),
    ],
)
def test_nonsense_is_rejected_with_exit_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    name: str,
    says: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert _error_locs(info.value) == [(name.removeprefix("LEADSTREAM_").lower(),)]

    monkeypatch.setenv("LEADSTREAM_TIKTOK_ACCESS_TOKEN", "tok")
    monkeypatch.setenv("LEADSTREAM_TIKTOK_PIXEL_CODE", "PIXEL1")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"leadstream: error: {name}: ")
    assert says in err[0]


@pytest.mark.parametrize(
    "env",
    [
        {"LEADSTREAM_PENDING_WAIT": "0"},  # send at once with the input's own keys
        {"LEADSTREAM_RETRY_BACKOFF_INITIAL": "2", "LEADSTREAM_RETRY_BACKOFF_MAX": "2"},
        {"LEADSTREAM_LEDGER_RETENTION": "1"},
    ],
)
def test_edge_values_that_make_sense_are_accepted(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Settings()
