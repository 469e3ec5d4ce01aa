"""Configuration: defaults, accepted URL forms, and one clear line for a bad value."""

from __future__ import annotations

import pytest

from encompass.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AMQP_URL", "DATABASE_URL", "HTTP_PORT", "LOG_FORMAT", "NOW", "QUEUE_PREFIX"):
        monkeypatch.delenv(f"ENCOMPASS_{name}", raising=False)


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings()
    assert settings.amqp_url is None  # the embedded broker
    assert settings.database_kind == "sqlite"
    assert settings.database_url == "sqlite+aiosqlite:///./encompass.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert (settings.rate_limit_credential, settings.rate_limit_credential_burst) == (20, 200)
    assert (settings.rate_limit_address, settings.rate_limit_address_burst) == (50, 500)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_plain_database_urls_are_accepted(
    monkeypatch: pytest.MonkeyPatch, given: str, expected: str
) -> None:
    monkeypatch.setenv("ENCOMPASS_DATABASE_URL", given)
    assert load_settings().database_url == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTP_PORT", "eighty"),
        ("HTTP_PORT", "70000"),
        ("LOG_FORMAT", "xml"),
        ("NOW", "yesterday"),
        ("NOW", "2026-11-23T07:00:00"),
        ("DATABASE_URL", "mysql://x"),
        ("AMQP_URL", "http://localhost"),
        ("RATE_LIMIT_CREDENTIAL", "-1"),
        ("RATE_LIMIT_ADDRESS_BURST", "0"),
        ("RATE_LIMIT_ADDRESS", "fast"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"ENCOMPASS_{name}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"ENCOMPASS_{name}: ")
    assert "\n" not in message


def test_now_sets_the_clock_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCOMPASS_NOW", "2026-11-20T23:30:00+00:00")
    assert load_settings().now is not None
