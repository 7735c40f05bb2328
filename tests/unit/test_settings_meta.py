"""Meta Conversions API settings: names, defaults, secret token, on only with id and token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from streams.meta.payload import DEFAULT_STAGE_MAP_META
from streams.settings import Settings, known_variables

META_VARIABLES = {
    "LEADSTREAM_META_PIXEL_ID",
    "LEADSTREAM_META_ACCESS_TOKEN",
    "LEADSTREAM_META_API_URL",
    "LEADSTREAM_META_API_VERSION",
    "LEADSTREAM_META_TEST_EVENT_CODE",
    "LEADSTREAM_META_STAGE_MAP",
}


def test_the_variables_are_named_as_documented() -> None:
    assert META_VARIABLES <= set(known_variables())


def test_defaults_leave_meta_off() -> None:
    settings = Settings()
    assert not settings.meta_configured()
    assert settings.meta_api_url == "https://graph.facebook.com"
    assert settings.meta_api_version == "v25.0"
    assert settings.meta_stage_map_or_default() == dict(DEFAULT_STAGE_MAP_META)


def test_meta_is_on_with_dataset_id_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_META_PIXEL_ID", "123456789012345")
    monkeypatch.setenv("LEADSTREAM_META_ACCESS_TOKEN", "EAAB-secret")
    monkeypatch.setenv("LEADSTREAM_META_TEST_EVENT_CODE", "TEST123")
    settings = Settings()
    assert settings.meta_configured()
    assert isinstance(settings.meta_access_token, SecretStr)
    assert "EAAB-secret" not in repr(settings)
    assert settings.meta_test_event_code == "TEST123"


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("LEADSTREAM_META_PIXEL_ID", "LEADSTREAM_META_ACCESS_TOKEN"),
        ("LEADSTREAM_META_ACCESS_TOKEN", "LEADSTREAM_META_PIXEL_ID"),
    ],
)
def test_half_a_meta_configuration_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, missing: str
) -> None:
    monkeypatch.setenv(name, "x")
    with pytest.raises(ValidationError, match=f"{name} is set without {missing}"):
        Settings()


def test_empty_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_META_PIXEL_ID", "")
    monkeypatch.setenv("LEADSTREAM_META_ACCESS_TOKEN", "")
    assert not Settings().meta_configured()


@pytest.mark.parametrize(("text", "expected"), [("v25.0", "v25.0"), ("24.0", "v24.0")])
def test_api_version(monkeypatch: pytest.MonkeyPatch, text: str, expected: str) -> None:
    monkeypatch.setenv("LEADSTREAM_META_API_VERSION", text)
    assert Settings().meta_api_version == expected


@pytest.mark.parametrize("text", ["latest", "v25", "v25.0/evil"])
def test_bad_api_version_names_the_variable(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("LEADSTREAM_META_API_VERSION", text)
    with pytest.raises(ValidationError, match="not a Graph API version"):
        Settings()


def test_meta_stage_map_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_META_STAGE_MAP", '{"Qualified": "MQL", "won": "Purchase"}')
    assert Settings().meta_stage_map_or_default() == {"qualified": "MQL", "won": "Purchase"}


def test_bad_meta_stage_map_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_META_STAGE_MAP", "[1]")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("meta_stage_map",)


def test_meta_stage_map_does_not_change_tiktok_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSTREAM_META_STAGE_MAP", '{"qualified": "MQL"}')
    assert Settings().web_stage_map()["qualified"] == "ApplicationApproval"
