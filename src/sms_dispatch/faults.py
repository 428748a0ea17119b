"""Tell an outage (a dependency that does not answer) from a bug, and log each the right way.

An outage is expected and passes: the engine's loops log one line when it starts and one when
it ends (``OutageLog``), not a traceback per tick. Anything else is a bug and keeps its
traceback. The classification is this one function so that it can narrow to
``DependencyUnavailable`` alone once every store raises that for a database away.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import sqlalchemy.exc
import structlog

from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.observability.outages import OutageLog

_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    DependencyUnavailable,
    OSError,  # refused, reset, unreachable: ConnectionError is one
    TimeoutError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came free: they all wait on a server away
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, "connection does not exist" among them
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # a restart ended our session
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def is_outage(exc: BaseException) -> bool:
    """Return True when ``exc`` means a dependency does not answer, False for a bug."""
    seen = 0
    error: BaseException | None = exc
    while error is not None and seen < 5:  # a wrapper's own cause, explicitly chained, never its context
        if isinstance(error, _OUTAGE_ERRORS):
            return True
        if isinstance(error, sqlalchemy.exc.DBAPIError) and (
            error.connection_invalidated
            or isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)
        ):
            return True
        orig = getattr(error, "orig", None)
        error = orig if isinstance(orig, BaseException) else error.__cause__
        seen += 1
    return False


def log_failure(
    exc: BaseException,
    message: str,
    *,
    outage: OutageLog,
    logger: structlog.stdlib.BoundLogger,
    **fields: Any,
) -> None:
    """Log a failed step: an outage once through ``outage``, a bug with its traceback to ``logger``."""
    if is_outage(exc):
        outage.failed(exc, **fields)
    else:
        logger.error(message, exc_info=exc, **fields)


__all__ = ["is_outage", "log_failure"]
