"""API keys on the HTTP API: who may read and who may operate (``API_KEYS``, see ``api_keys.py``).

Protect a route or a whole router with a dependency, so the OpenAPI document shows the
security schemes and the 401/403 answers:

    router = APIRouter(prefix="/things", dependencies=[ReadAccess], responses=READ_ERRORS)

    @router.post("", dependencies=[OperateAccess], responses=error_responses(400, 403, 503))
    async def change_a_thing(...): ...

A key comes in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No key or an unknown
one is a 401 envelope (with ``WWW-Authenticate``); a ``read`` key on an ``operate`` route is a
403 envelope. Each candidate is compared with every configured key in constant time. With
``API_KEYS`` unset the API is open (start-up warns); ``APP_ENV=production`` refuses that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from sms_dispatch.api.envelope import error_responses
from sms_dispatch.api_keys import SHORT_KEY_LENGTH, Scope
from sms_dispatch.config import Settings
from sms_dispatch.errors import ConfigError
from sms_dispatch.logs import get_logger

log = get_logger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sms-dispatch"'}

_bearer = HTTPBearer(
    auto_error=False, scheme_name="bearerKey", description="An API key: `Authorization: Bearer <key>`."
)
_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyHeader",
    description="An API key: `X-API-Key: <key>`.",
)


def _digest(key: str) -> bytes:
    # Equal-length digests: compare_digest then takes the same time whatever the key's length.
    return hashlib.sha256(key.encode()).digest()


class Keyring:
    """The configured API keys and their scopes; empty means the API is open."""

    def __init__(self, keys: Mapping[str, Scope]) -> None:
        self._keys = [(_digest(key), scope) for key, scope in keys.items()]

    @property
    def is_open(self) -> bool:
        """True when no key is configured: every route answers without one."""
        return not self._keys

    def scope_of(self, candidate: str) -> Scope | None:
        """Return the scope of ``candidate``, or None; compares with every key, in constant time."""
        digest = _digest(candidate)
        found: Scope | None = None
        for key_digest, scope in self._keys:
            if hmac.compare_digest(digest, key_digest):
                found = scope
        return found


def check_api_keys(settings: Settings) -> None:
    """Raise ``ConfigError`` when ``APP_ENV=production`` and ``API_KEYS`` is not set."""
    if settings.app_env == "production" and not settings.api_key_scopes():
        raise ConfigError(
            "API_KEYS is not set: with APP_ENV=production the API needs keys"
            " (API_KEYS=<key>:operate,<key>:read)"
        )


def keyring_for(settings: Settings) -> Keyring:
    """Return the keyring of ``settings``; refuse an open API in production (``ConfigError``)."""
    check_api_keys(settings)
    keys = settings.api_key_scopes()
    if not keys:
        log.warning("API_KEYS is not set: the API is open to anyone who can reach it")
    short = sum(1 for key in keys if len(key) < SHORT_KEY_LENGTH)
    if short:
        log.warning("some API keys are short and easy to guess", short_keys=short, advised_length=32)
    return Keyring(keys)


class RequireScope:
    """A dependency that lets a request through only with a key of (at least) ``scope``."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(
        self,
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header_key: Annotated[str | None, Security(_header)],
    ) -> Scope | None:
        """Check the request's key; return its scope (None when the API is open)."""
        keyring: Keyring = request.app.state.keyring
        if keyring.is_open:
            return None
        candidate = bearer.credentials if bearer is not None else header_key
        if not candidate:
            raise HTTPException(
                401, "an API key is required: send Authorization: Bearer <key> or X-API-Key", CHALLENGE
            )
        scope = keyring.scope_of(candidate)
        if scope is None:
            raise HTTPException(401, "unknown API key", CHALLENGE)
        if not scope.allows(self.scope):
            raise HTTPException(403, f"this key's scope is {scope}; this needs an {self.scope} key")
        return scope


ReadAccess = Security(RequireScope(Scope.READ))
"""Needs a ``read`` or an ``operate`` key (when keys are configured)."""
OperateAccess = Security(RequireScope(Scope.OPERATE))
"""Needs an ``operate`` key (when keys are configured)."""
READ_ERRORS = error_responses(401)
OPERATE_ERRORS = error_responses(401, 403)
