"""Which provider the sending commands (``serve``, ``worker``, ``dispatch``) talk to.

The built-in simulator accepts everything and delivers nothing, so it is used only where nobody
can mistake it for the real thing: the embedded default (no database configured,
``APP_ENV=development``), or when ``SMS_PROVIDER_URL=simulator`` asks for it by name (never with
``APP_ENV=production``). Anywhere else a missing ``SMS_PROVIDER_URL`` stops start-up: a
configured deployment would otherwise mark real messages sent that no provider ever saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sms_dispatch.config import PROVIDER_SIMULATOR, Settings
from sms_dispatch.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    """The provider to send to: a URL, or (``url`` None) the built-in simulator."""

    url: str | None
    reason: str
    """Why this provider, for the start-up log."""

    @property
    def simulator(self) -> bool:
        """True when the built-in simulator stands in for the provider: nothing is delivered."""
        return self.url is None


def choose_provider(settings: Settings) -> ProviderChoice:
    """Return the provider the settings name; ``ConfigError`` when they name none or a forbidden one."""
    url = settings.sms_provider_url
    if url == PROVIDER_SIMULATOR:
        if settings.app_env == "production":
            raise ConfigError(
                f"SMS_PROVIDER_URL={PROVIDER_SIMULATOR} is refused with APP_ENV=production: the simulator"
                " delivers nothing; set SMS_PROVIDER_URL to the provider's URL"
            )
        return ProviderChoice(None, f"SMS_PROVIDER_URL={PROVIDER_SIMULATOR}")
    if url is not None:
        return ProviderChoice(url, "SMS_PROVIDER_URL")
    if settings.uses_embedded_database and settings.app_env == "development":
        return ProviderChoice(None, "SMS_PROVIDER_URL is not set (embedded default)")
    raise ConfigError(
        "SMS_PROVIDER_URL is not set: set it to the provider's URL (https://...), or to"
        f" {PROVIDER_SIMULATOR} to send to the built-in simulator, which delivers nothing"
        " (the simulator is the default only with the embedded SQLite database and APP_ENV=development)"
    )


def shown_url(url: str) -> str:
    """Return ``url`` fit for a log line: without a user, a password, a query or a fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
