"""Which provider the sending commands use: the simulator only for the embedded default or by name."""

from __future__ import annotations

import pytest

from sms_dispatch.config import Settings
from sms_dispatch.errors import ConfigError
from sms_dispatch.provider_choice import choose_provider, shown_url

PG = {"DATABASE_URL": "postgresql://app:secret@db:5432/sms"}
GO_ENV = {"APP_ENV": "development", "DB_HOST": "db", "DB_PASSWORD": "123456", "DB_NAME": "db_ins_message"}


def settings(**values: str) -> Settings:
    """Settings from ``values`` alone (no environment, no .env file)."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the service's variables leak in from the test run's environment."""
    for field in Settings.model_fields.values():
        if field.alias:
            monkeypatch.delenv(field.alias, raising=False)


def test_the_embedded_default_uses_the_simulator() -> None:
    """No database configured and APP_ENV=development: the simulator, and the reason says why."""
    choice = choose_provider(settings())
    assert choice.simulator and choice.url is None
    assert "not set" in choice.reason


def test_a_url_is_used_as_given() -> None:
    """SMS_PROVIDER_URL names the provider: no simulator."""
    choice = choose_provider(settings(SMS_PROVIDER_URL="https://webhook.site/abc", **PG))
    assert (choice.simulator, choice.url) == (False, "https://webhook.site/abc")


@pytest.mark.parametrize(
    "values",
    [PG, GO_ENV, {"APP_ENV": "production"}, {"DATABASE_URL": "sqlite:///other.db"}],
    ids=["postgresql", "go-env-without-url", "embedded-in-production", "sqlite-by-url"],
)
def test_a_configured_deployment_without_a_url_is_refused(values: dict[str, str]) -> None:
    """Any database but the embedded default, or production, needs SMS_PROVIDER_URL: nothing is faked."""
    with pytest.raises(ConfigError) as caught:
        choose_provider(settings(**values))
    assert caught.value.message.startswith("SMS_PROVIDER_URL is not set")
    assert "SMS_PROVIDER_URL" in caught.value.message and "simulator" in caught.value.message


def test_the_simulator_by_name_works_on_any_database() -> None:
    """SMS_PROVIDER_URL=simulator asks for it on PostgreSQL too (development)."""
    choice = choose_provider(settings(SMS_PROVIDER_URL="simulator", **PG))
    assert choice.simulator
    assert choice.reason == "SMS_PROVIDER_URL=simulator"


def test_the_simulator_is_refused_in_production() -> None:
    """SMS_PROVIDER_URL=simulator with APP_ENV=production stops start-up, naming both."""
    with pytest.raises(ConfigError) as caught:
        choose_provider(settings(SMS_PROVIDER_URL="simulator", APP_ENV="production", **PG))
    assert "SMS_PROVIDER_URL=simulator" in caught.value.message
    assert "APP_ENV=production" in caught.value.message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pa55@sms.example:8443/send?token=abc#x", "https://sms.example:8443/send"),
        ("https://webhook.site/d4de976a", "https://webhook.site/d4de976a"),
        ("http://127.0.0.1:9090/", "http://127.0.0.1:9090/"),
    ],
)
def test_the_logged_url_carries_no_credentials(url: str, shown: str) -> None:
    """User, password, query and fragment are left out of the URL the log names."""
    assert shown_url(url) == shown
