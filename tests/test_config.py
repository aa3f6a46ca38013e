"""Stage settings: resource names are required, the rest have documented defaults."""

from __future__ import annotations

import pytest

from chalicelib.config import reset_settings, settings
from chalicelib.errors import ConfigurationError

RESOURCE_NAMES = (
    "UPLOADS_BUCKET",
    "DERIVED_BUCKET",
    "JOBS_TABLE",
    "API_KEYS_TABLE",
    "JOBS_QUEUE",
    "WEBHOOKS_TABLE",
    "WEBHOOKS_QUEUE",
    "WEBHOOK_SECRETS_KEY",
    "BACKFILLS_TABLE",
    "BACKFILL_QUEUE",
)


@pytest.mark.parametrize("missing", RESOURCE_NAMES)
def test_a_missing_resource_name_fails_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for variable in RESOURCE_NAMES:
        monkeypatch.setenv(variable, f"name-of-{variable.lower()}")
    monkeypatch.setenv(missing, "")
    reset_settings()
    with pytest.raises(ConfigurationError, match=f"^{missing} is not set"):
        settings()


def test_resource_names_are_read_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in RESOURCE_NAMES:
        monkeypatch.setenv(variable, f"name-of-{variable.lower()}")
    reset_settings()
    config = settings()
    assert config.uploads_bucket == "name-of-uploads_bucket"
    assert config.derived_bucket == "name-of-derived_bucket"
    assert config.jobs_table == "name-of-jobs_table"
    assert config.api_keys_table == "name-of-api_keys_table"
    assert config.jobs_queue == "name-of-jobs_queue"
    assert config.webhooks_table == "name-of-webhooks_table"
    assert config.webhook_secrets_key == "name-of-webhook_secrets_key"
    assert config.webhook_allow_http is False
    assert config.webhook_allowed_networks == ()
    assert config.max_upload_bytes == 25 * 1024 * 1024


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_a_flag_is_0_or_1(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    for variable in RESOURCE_NAMES:
        monkeypatch.setenv(variable, f"name-of-{variable.lower()}")
    monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", value)
    reset_settings()
    with pytest.raises(ConfigurationError, match=r"^WEBHOOK_ALLOW_HTTP must be 0 or 1"):
        settings()


def test_allowed_networks_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in RESOURCE_NAMES:
        monkeypatch.setenv(variable, f"name-of-{variable.lower()}")
    monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", " 127.0.0.1/32, ::1/128 ,")
    reset_settings()
    assert settings().webhook_allow_http is True
    assert settings().webhook_allowed_networks == ("127.0.0.1/32", "::1/128")
