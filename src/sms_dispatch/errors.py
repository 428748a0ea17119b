"""The one exception tree of sms-dispatch.

    SmsDispatchError                 anything this service raises on purpose
     ├── ConfigError                 a setting cannot be parsed or is out of range
     ├── CannotStart                 start-up stopped: a database, port or schema that does not fit
     ├── InvalidInput                input breaks a rule (HTTP 400); carries one message per field
     ├── NotFound                    no such message (HTTP 404)
     ├── Conflict                    the action does not fit the message's state (HTTP 409)
     └── DependencyUnavailable       the database or another dependency does not answer (HTTP 503)

Each class's docstring is its default message. The API maps these to status codes in
one place (``api/errors.py``); nothing else in the code knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping


class SmsDispatchError(Exception):
    """Something went wrong in sms-dispatch."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        super().__init__(self.message)


class ConfigError(SmsDispatchError):
    """A setting cannot be parsed or is out of range."""


class CannotStart(SmsDispatchError):
    """The service cannot start here: what it needs is missing, refuses it, or does not fit."""


class InvalidInput(SmsDispatchError):
    """The input breaks a rule."""

    def __init__(self, fields: Mapping[str, str], message: str | None = None) -> None:
        self.fields = dict(fields)
        summary = "; ".join(f"{name}: {why}" for name, why in self.fields.items())
        super().__init__(message or summary or None)


class NotFound(SmsDispatchError):
    """No such message."""


class Conflict(SmsDispatchError):
    """The action does not fit the message's current state."""


class DependencyUnavailable(SmsDispatchError):
    """A dependency (database, cache) does not answer."""

    def __init__(self, message: str | None = None, *, dependency: str | None = None) -> None:
        self.dependency = dependency
        """Which one (``"database"``, ``"redis"``), when the raiser knows."""
        super().__init__(message)
