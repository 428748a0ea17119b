"""Settings: the seed's .env verbatim, overrides, and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sms_dispatch.config import Settings, load_settings
from sms_dispatch.errors import ConfigError
from sms_dispatch.processes import child_name

SEED_ENV = """\
# App
APP_NAME=insider-assessment
APP_ENV=development          # development | production

# API Server
API_HOST=127.0.0.1
API_PORT=8080             # docker-compose port: "8080:8080"

# Redis
REDIS_HOST=redis
REDIS_PORT=6379
REDIS_PASSWORD=
REDIS_DB=0

# Postgresql
DB_HOST=db
DB_PORT=5432
DB_USER=postgres
DB_PASSWORD=123456
DB_NAME=db_ins_message
DB_SSLMODE=disable

# SMS Service
SMS_PROVIDER_URL=https://webhook.site/d4de976a-6ef9-4ede-96e5-57be6c4b1467
SMS_PROVIDER_KEY=INS.me1x9uMcyYGlhKKQVPoc.bO3j9aZwRTOcA2Ywo

# Scheduler
SCHEDULER_INTERVAL=2m          
SCHEDULER_BATCH_TIMEOUT=10s    

# Message Process
MESSAGE_BATCH_SIZE=2           
MESSAGE_MAX_WORKERS=2          
MESSAGE_PER_MESSAGE_TIMEOUT=5s
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test with none of our variables set and in an empty folder."""
    for name in Settings.model_fields.values():
        if name.alias:
            monkeypatch.delenv(name.alias, raising=False)
    monkeypatch.chdir(tmp_path)


def write_env(tmp_path: Path, text: str) -> Path:
    """Write a .env file and return its path."""
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_env_works_verbatim(tmp_path: Path) -> None:
    """The Go service's .env, comments and trailing blanks included, parses to the same values."""
    s = load_settings(write_env(tmp_path, SEED_ENV))
    assert (s.scheduler_interval_s, s.scheduler_batch_timeout_s, s.message_per_message_timeout_s) == (
        120,
        10,
        5,
    )
    assert (s.message_batch_size, s.message_max_workers, s.api_port) == (2, 2, 8080)
    assert s.redis_password is None
    assert s.redis_connection_url() == "redis://redis:6379/0"
    url = s.sqlalchemy_url()
    assert (url.drivername, url.host, url.database, url.password) == (
        "postgresql+asyncpg",
        "db",
        "db_ins_message",
        "123456",
    )
    assert url.query["ssl"] == "disable"
    assert s.sms_provider_key.get_secret_value().startswith("INS.")


def test_defaults_are_embedded() -> None:
    """With nothing set: SQLite, in-process cache, simulator, 2 messages every 2 minutes."""
    s = load_settings(None)
    assert s.uses_embedded_database
    assert s.sqlalchemy_url().drivername == "sqlite+aiosqlite"
    assert s.redis_connection_url() is None
    assert s.sms_provider_url is None
    assert (s.scheduler_interval_s, s.message_batch_size, s.message_max_length, s.cache_ttl_s) == (
        120,
        2,
        255,
        86400,
    )


def test_urls_override_pieces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DATABASE_URL and REDIS_URL win over DB_* and REDIS_*."""
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h:6543/d?sslmode=require")
    monkeypatch.setenv("REDIS_URL", "redis://r:1/2")
    s = load_settings(write_env(tmp_path, SEED_ENV))
    url = s.sqlalchemy_url()
    assert (url.drivername, url.host, url.port, url.query["ssl"]) == (
        "postgresql+asyncpg",
        "h",
        6543,
        "require",
    )
    assert s.redis_connection_url() == "redis://r:1/2"


def test_redis_addr_is_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_ADDR=host:port is accepted like the Go service's."""
    monkeypatch.setenv("REDIS_ADDR", "cache.local:6380")
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    assert load_settings(None).redis_connection_url() == "redis://:pw@cache.local:6380/0"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SCHEDULER_INTERVAL", "abc", "invalid SCHEDULER_INTERVAL='abc': 'abc' is not a Go duration"),
        ("MESSAGE_BATCH_SIZE", "0", "invalid MESSAGE_BATCH_SIZE='0'"),
        ("MESSAGE_BATCH_SIZE", "two", "invalid MESSAGE_BATCH_SIZE='two'"),
        ("API_PORT", "70000", "invalid API_PORT"),
        ("MESSAGE_PER_MESSAGE_TIMEOUT", "0", "must be greater than zero"),
        ("APP_ENV", "staging", "invalid APP_ENV"),
        ("PROVIDER_HTTP_CLIENT", "curl", "invalid PROVIDER_HTTP_CLIENT='curl'"),
        ("SMS_PROVIDER_URL", "webhook.site/abc", "must be an http:// or https:// URL with a host"),
        ("SMS_PROVIDER_URL", "ftp://files.example/x", "invalid SMS_PROVIDER_URL"),
        ("PROVIDER_IDEMPOTENCY_HEADER", "Idempotency Key", "must be an HTTP header name"),
        ("SMS_PROVIDER_KEY", "INS.key\twith-a-tab", "invalid SMS_PROVIDER_KEY"),
        ("DATABASE_URL", "mysql://x/y", "must be postgresql:// or sqlite://"),
        ("INSTANCE_NAME", "w" * 101, "invalid INSTANCE_NAME"),
        ("REDIS_ADDR", "127.0.0.1:notaport", "invalid REDIS_ADDR='127.0.0.1:notaport': must be host:port"),
        ("REDIS_ADDR", "cache:0", "invalid REDIS_ADDR"),
        ("REDIS_URL", "cache.local:6379", "invalid REDIS_URL: must be a redis://, rediss:// or unix:// URL"),
        ("LOG_LEVEL", "verbose", "invalid LOG_LEVEL='VERBOSE': Input should be 'DEBUG'"),
        ("MIGRATE_ON_START", "perhaps", "invalid MIGRATE_ON_START='perhaps'"),
        ("MIGRATE_ALLOW_OLDER_INSTANCES", "perhaps", "invalid MIGRATE_ALLOW_OLDER_INSTANCES"),
    ],
)
def test_bad_values_stop_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """An unparseable or out-of-range value raises ConfigError naming the variable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad secret-bearing variable is named but its value is not printed."""
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@x/y")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert "hunter2" not in caught.value.message


def test_the_default_instance_name_fits_its_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host name longer than the columns allow is cut so that the name, with its pid, fits."""
    monkeypatch.setattr("socket.gethostname", lambda: "h" * 300)
    name = load_settings(None).instance_name
    assert len(name) == 100
    assert name.endswith(f"-{os.getpid()}")


def test_worker_children_names_fit_their_columns() -> None:
    """``--processes N`` names child n ``<name>-n``, the parent's name cut so that it still fits."""
    assert child_name("worker", 2) == "worker-2"
    long = child_name("w" * 100, 12)
    assert (len(long), long[-3:]) == (100, "-12")


@pytest.mark.parametrize(("value", "level"), [("debug", "DEBUG"), ("Info", "INFO"), ("WARNING", "WARNING")])
def test_log_levels_are_case_insensitive(monkeypatch: pytest.MonkeyPatch, value: str, level: str) -> None:
    """LOG_LEVEL=debug is DEBUG, as the Go service's users write it."""
    monkeypatch.setenv("LOG_LEVEL", value)
    assert load_settings(None).log_level == level


def test_app_env_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """APP_ENV=Production is production (JSON lines, API keys required)."""
    monkeypatch.setenv("APP_ENV", "Production")
    assert load_settings(None).app_env == "production"


def test_redis_addr_without_a_port_uses_redis_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_ADDR=host alone is still accepted, with REDIS_PORT."""
    monkeypatch.setenv("REDIS_ADDR", "cache.local")
    monkeypatch.setenv("REDIS_PORT", "6390")
    assert load_settings(None).redis_connection_url() == "redis://cache.local:6390/0"


def test_a_provider_key_of_any_length_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider issues the key: a one-character key is taken as it is."""
    monkeypatch.setenv("SMS_PROVIDER_KEY", "K")
    assert load_settings(None).sms_provider_key.get_secret_value() == "K"


def test_the_simulator_can_be_named_as_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMS_PROVIDER_URL=simulator is a valid value (which commands accept it: provider_choice)."""
    monkeypatch.setenv("SMS_PROVIDER_URL", "simulator")
    assert load_settings(None).sms_provider_url == "simulator"


def test_serve_migrates_on_start_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """MIGRATE_ON_START defaults to true; MIGRATE_ALLOW_OLDER_INSTANCES to false."""
    defaults = load_settings(None)
    assert (defaults.migrate_on_start, defaults.migrate_allow_older_instances) == (True, False)
    monkeypatch.setenv("MIGRATE_ON_START", "false")
    monkeypatch.setenv("MIGRATE_ALLOW_OLDER_INSTANCES", "true")
    changed = load_settings(None)
    assert (changed.migrate_on_start, changed.migrate_allow_older_instances) == (False, True)
