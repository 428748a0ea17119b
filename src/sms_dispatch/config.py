"""Settings: every variable, typed and parsed once, from the environment and a ``.env`` file.

The Go service's ``.env`` works unchanged. A value that cannot be parsed stops start-up
with one line naming the variable (``ConfigError``); nothing is silently defaulted.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from sms_dispatch.api_keys import Scope, parse_api_keys
from sms_dispatch.domain import MESSAGE_MAX_LENGTH_DEFAULT, RecipientCheck
from sms_dispatch.durations import parse_duration_s
from sms_dispatch.errors import ConfigError


def _duration(value: Any) -> Any:
    return parse_duration_s(value) if isinstance(value, str) else value


def _non_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


Seconds = Annotated[float, BeforeValidator(_duration), AfterValidator(_non_negative)]
PositiveSeconds = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def _check_api_keys(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        parse_api_keys(value.get_secret_value())
    return value


def _check_redis_addr(value: str | None) -> str | None:
    if value is not None:
        host, colon, port = value.rpartition(":")
        if colon and not (host and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError("must be host:port (the port a number from 1 to 65535), or a host alone")
    return value


def _check_redis_url(value: SecretStr | None) -> SecretStr | None:
    if value is not None and urlsplit(value.get_secret_value()).scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


PROVIDER_SIMULATOR = "simulator"
"""The ``SMS_PROVIDER_URL`` value that asks for the built-in provider simulator (delivers nothing)."""

_HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _check_provider_url(value: str | None) -> str | None:
    if value is not None and value != PROVIDER_SIMULATOR:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, or {PROVIDER_SIMULATOR}")
    return value


def _check_header_name(value: str) -> str:
    if not _HEADER_TOKEN.fullmatch(value):
        raise ValueError("must be an HTTP header name (letters, digits and -, no spaces)")
    return value


def _check_header_value(value: SecretStr) -> SecretStr:
    if not all(" " <= char <= "~" for char in value.get_secret_value()):
        raise ValueError("must be printable ASCII: it is sent as the x-ins-auth-key header")
    return value


INSTANCE_NAME_MAX = 100
"""The longest instance name: ``messages.claimed_by`` and ``instances.name`` hold 100 characters."""


def fitted_instance_name(base: str, suffix: str) -> str:
    """Return ``base + suffix``, ``base`` cut so that the name fits ``INSTANCE_NAME_MAX``."""
    return base[: INSTANCE_NAME_MAX - len(suffix)] + suffix


def _default_instance_name() -> str:
    return fitted_instance_name(socket.gethostname(), f"-{os.getpid()}")


class Settings(BaseSettings):
    """Every setting of the service; the aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
        frozen=True,
        populate_by_name=True,
    )

    app_name: str = Field("sms-dispatch", alias="APP_NAME")
    app_env: Annotated[Literal["development", "production"], BeforeValidator(_lower)] = Field(
        "development", alias="APP_ENV"
    )
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = Field(
        "INFO", alias="LOG_LEVEL"
    )
    instance_name: str = Field(
        default_factory=_default_instance_name,
        min_length=1,
        max_length=INSTANCE_NAME_MAX,
        alias="INSTANCE_NAME",
    )

    api_host: str = Field("127.0.0.1", alias="API_HOST")
    api_port: int = Field(8080, ge=1, le=65535, alias="API_PORT")

    database_url: SecretStr | None = Field(None, alias="DATABASE_URL")
    db_host: str | None = Field(None, alias="DB_HOST")
    db_port: int = Field(5432, ge=1, le=65535, alias="DB_PORT")
    db_user: str = Field("postgres", alias="DB_USER")
    db_password: SecretStr | None = Field(None, alias="DB_PASSWORD")
    db_name: str = Field("postgres", alias="DB_NAME")
    db_sslmode: SslMode = Field("disable", alias="DB_SSLMODE")
    sqlite_path: Path = Field(Path("sms-dispatch.db"), alias="SQLITE_PATH")
    db_pool_size: int = Field(10, ge=1, le=1000, alias="DB_POOL_SIZE")

    redis_url: Annotated[SecretStr | None, AfterValidator(_check_redis_url)] = Field(None, alias="REDIS_URL")
    redis_addr: Annotated[str | None, AfterValidator(_check_redis_addr)] = Field(None, alias="REDIS_ADDR")
    redis_host: str | None = Field(None, alias="REDIS_HOST")
    redis_port: int = Field(6379, ge=1, le=65535, alias="REDIS_PORT")
    redis_password: SecretStr | None = Field(None, alias="REDIS_PASSWORD")
    redis_db: int = Field(0, ge=0, le=15, alias="REDIS_DB")
    cache_ttl_s: PositiveSeconds = Field(86400.0, alias="CACHE_TTL")

    sms_provider_url: Annotated[str | None, AfterValidator(_check_provider_url)] = Field(
        None, alias="SMS_PROVIDER_URL"
    )
    sms_provider_key: Annotated[SecretStr, AfterValidator(_check_header_value)] = Field(
        SecretStr(""), alias="SMS_PROVIDER_KEY"
    )
    provider_idempotency_header: Annotated[str, AfterValidator(_check_header_name)] = Field(
        "Idempotency-Key", alias="PROVIDER_IDEMPOTENCY_HEADER"
    )
    provider_http_client: Literal["pyreqwest", "aiohttp"] = Field("pyreqwest", alias="PROVIDER_HTTP_CLIENT")

    scheduler_interval_s: Seconds = Field(120.0, alias="SCHEDULER_INTERVAL")
    scheduler_batch_timeout_s: PositiveSeconds = Field(10.0, alias="SCHEDULER_BATCH_TIMEOUT")
    message_batch_size: int = Field(2, ge=1, le=100_000, alias="MESSAGE_BATCH_SIZE")
    message_max_workers: int = Field(2, ge=1, le=10_000, alias="MESSAGE_MAX_WORKERS")
    message_rate_limit_per_s: float | None = Field(None, gt=0, le=1_000_000, alias="MESSAGE_RATE_LIMIT")
    """Continuous mode: messages per second for the whole fleet; unset, no limit."""
    message_per_message_timeout_s: PositiveSeconds = Field(5.0, alias="MESSAGE_PER_MESSAGE_TIMEOUT")
    message_max_attempts: int = Field(5, ge=1, le=100, alias="MESSAGE_MAX_ATTEMPTS")
    message_retry_base_s: PositiveSeconds = Field(10.0, alias="MESSAGE_RETRY_BASE")
    message_retry_max_delay_s: PositiveSeconds = Field(600.0, alias="MESSAGE_RETRY_MAX_DELAY")
    message_lease_margin_s: Seconds = Field(30.0, alias="MESSAGE_LEASE_MARGIN")

    seed_on_first_run: int = Field(10, ge=0, le=100_000, alias="SEED_ON_FIRST_RUN")

    # What a message must be, for the API, the CLI and the dispatcher's check of rows inserted
    # by hand alike. The defaults let through every row the Go service would send.
    message_max_length: int = Field(MESSAGE_MAX_LENGTH_DEFAULT, ge=1, le=10_000, alias="MESSAGE_MAX_LENGTH")
    recipient_check: RecipientCheck = Field(RecipientCheck.POSSIBLE, alias="RECIPIENT_CHECK")

    api_keys: Annotated[SecretStr | None, AfterValidator(_check_api_keys)] = Field(None, alias="API_KEYS")
    retention_success_s: Seconds = Field(30 * 86400.0, alias="RETENTION_SUCCESS")
    retention_failed_s: Seconds = Field(90 * 86400.0, alias="RETENTION_FAILED")
    retention_interval_s: PositiveSeconds = Field(3600.0, alias="RETENTION_INTERVAL")
    retention_batch_size: int = Field(1000, ge=1, le=100_000, alias="RETENTION_BATCH_SIZE")

    # --- Start-up and schema migrations -------------------------------------------------
    migrate_on_start: bool = Field(True, alias="MIGRATE_ON_START")
    """``serve`` upgrades the schema before it starts; false: it only checks it, like the others."""
    migrate_allow_older_instances: bool = Field(False, alias="MIGRATE_ALLOW_OLDER_INSTANCES")
    """Upgrade the schema even while instances of an older version send heartbeats."""

    def api_key_scopes(self) -> dict[str, Scope]:
        """Return ``{key: scope}`` from API_KEYS; empty when unset (the API is open)."""
        return parse_api_keys(self.api_keys.get_secret_value()) if self.api_keys else {}

    def secret_values(self) -> list[str]:
        """Return every secret the settings hold (provider key, passwords, API keys), for redaction."""
        plain = (self.sms_provider_key, self.db_password, self.redis_password)
        found = [secret.get_secret_value() for secret in plain if secret is not None]
        for url in (self.database_url, self.redis_url):
            password = urlsplit(url.get_secret_value()).password if url is not None else None
            if password:
                found += [password, unquote(password)]
        found += self.api_key_scopes()
        return sorted({value for value in found if value})

    @property
    def lease_s(self) -> float:
        """How long a claim is held: a whole batch plus one send, with a margin."""
        batch_and_send_s = self.scheduler_batch_timeout_s + self.message_per_message_timeout_s
        return batch_and_send_s + self.message_lease_margin_s

    @property
    def uses_embedded_database(self) -> bool:
        """True when neither DATABASE_URL nor DB_HOST is set: the SQLite file is used."""
        return self.database_url is None and self.db_host is None

    def sqlalchemy_url(self) -> URL:
        """Return the async SQLAlchemy URL: DATABASE_URL, else DB_* pieces, else the SQLite file."""
        if self.database_url is not None:
            return _async_url(self.database_url.get_secret_value())
        if self.db_host is not None:
            password = self.db_password.get_secret_value() if self.db_password else None
            return URL.create(
                "postgresql+asyncpg",
                username=self.db_user,
                password=password,
                host=self.db_host,
                port=self.db_port,
                database=self.db_name,
                query={"ssl": self.db_sslmode},
            )
        return URL.create("sqlite+aiosqlite", database=str(self.sqlite_path))

    def redis_connection_url(self) -> str | None:
        """Return the Redis URL (REDIS_URL, else REDIS_ADDR, else REDIS_HOST), or None for in-process."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        if self.redis_addr is not None:
            host, _, port = self.redis_addr.rpartition(":")
            host, port_number = (host, int(port)) if host else (self.redis_addr, self.redis_port)
        elif self.redis_host is not None:
            host, port_number = self.redis_host, self.redis_port
        else:
            return None
        auth = f":{self.redis_password.get_secret_value()}@" if self.redis_password else ""
        return f"redis://{auth}{host}:{port_number}/{self.redis_db}"


def _async_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except Exception as exc:
        raise ValueError(f"DATABASE_URL is not a database URL ({exc})") from None
    backend = url.get_backend_name()
    if backend in {"postgres", "postgresql"}:
        query = dict(url.query)
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        return url.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"DATABASE_URL must be postgresql:// or sqlite://, not {backend}://")


_SECRET = {"API_KEYS", "DATABASE_URL", "DB_PASSWORD", "REDIS_URL", "REDIS_PASSWORD", "SMS_PROVIDER_KEY"}


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read the settings; raise ``ConfigError`` with one line per faulty variable."""
    try:
        settings = Settings(_env_file=env_file)
        settings.sqlalchemy_url()
        settings.redis_connection_url()
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # the URL checks name their variable themselves
        raise ConfigError(str(exc)) from None
    return settings


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "configuration"
        why = str(error["msg"]).removeprefix("Value error, ")
        shown = "" if name.upper() in _SECRET else f"={error.get('input')!r}"
        lines.append(f"invalid {name.upper()}{shown}: {why}")
    return "; ".join(lines)
