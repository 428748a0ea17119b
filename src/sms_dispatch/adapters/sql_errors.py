"""One translation for the SQL store: "the database cannot be reached" becomes ``DependencyUnavailable``.

The callers (the API, the dispatcher) should not know SQLAlchemy's, asyncpg's or sqlite3's
exceptions to tell an outage from a bug. ``translate_unreachable`` wraps every public method
of the store class once; inside, a method may still catch a driver error first (a listing
runs a read once more on a fresh connection), and what escapes it is translated here:

- a connection the driver or SQLAlchemy saw close (``connection_invalidated``), a refused,
  reset or timed-out connect (``OSError``, ``TimeoutError``), a pool that gives no connection
  in time, asyncpg's connection errors and a server shutting down or full;
- SQLAlchemy's ``OperationalError`` and ``InterfaceError``, except SQLite's generic
  ``SQLITE_ERROR``: sqlite3 raises a wrong statement ("no such table") as an
  ``OperationalError`` too, and that is a bug, not an outage.

Everything else (a constraint violation, a wrong statement on PostgreSQL) passes unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, ParamSpec, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy import exc as sa_exc

from sms_dispatch.errors import DependencyUnavailable

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)

DATABASE = "database"
"""The dependency name the translated errors carry (``DependencyUnavailable.dependency``)."""

_UNREACHABLE_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, host unknown
    TimeoutError,  # a connect that did not finish in time
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the pool had no connection to give within its timeout
    asyncpg.PostgresConnectionError,  # class 08, "connection was closed in the middle of operation"
    asyncpg.CannotConnectNowError,  # 57P03, the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01, the server was stopped or restarted
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300, the server refuses new sessions
    asyncpg.InterfaceError,  # "connection is closed"
)
_MAX_CAUSES = 8


def is_unreachable(error: BaseException) -> bool:
    """Return True when ``error`` means the database cannot be reached (see the module)."""
    seen = 0
    current: BaseException | None = error
    # Follow the explicit causes only (``raise ... from``): SQLAlchemy wraps the driver's error
    # that way. An implicit context is an earlier, handled error, not this one's reason.
    while current is not None and seen < _MAX_CAUSES:
        if isinstance(current, DependencyUnavailable):
            return False
        if isinstance(current, sa_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError):
                return getattr(current.orig, "sqlite_errorname", None) != "SQLITE_ERROR"
        elif isinstance(current, _UNREACHABLE_TYPES):
            return True
        current = current.__cause__
        seen += 1
    return False


@contextlib.contextmanager
def unreachable_as_unavailable() -> Iterator[None]:
    """Raise ``DependencyUnavailable`` (the error as its cause) for an unreachable database inside."""
    try:
        yield
    except Exception as error:
        if not is_unreachable(error):
            raise
        raise DependencyUnavailable("the database does not answer", dependency=DATABASE) from error


def translate_unreachable(cls: C) -> C:
    """Wrap every public coroutine and async context manager method of ``cls`` (mixins included)."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        method = inspect.getattr_static(cls, name)
        if inspect.iscoroutinefunction(method):
            setattr(cls, name, _coroutine(method))
        elif inspect.isasyncgenfunction(getattr(method, "__wrapped__", None)):
            setattr(cls, name, _context_manager(method))
    return cls


def _coroutine(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        with unreachable_as_unavailable():
            return await method(*args, **kwargs)

    translated.__translated__ = True  # type: ignore[attr-defined]
    return translated


def _context_manager(
    method: Callable[P, AbstractAsyncContextManager[R]],
) -> Callable[P, AbstractAsyncContextManager[R]]:
    """Translate what entering and leaving raise; the caller's own errors inside pass unchanged."""

    @functools.wraps(method)
    @contextlib.asynccontextmanager
    async def translated(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
        manager = method(*args, **kwargs)
        with unreachable_as_unavailable():
            value = await manager.__aenter__()
        try:
            yield value
        except BaseException as error:
            with unreachable_as_unavailable():
                suppressed = await manager.__aexit__(type(error), error, error.__traceback__)
            if not suppressed:
                raise
        else:
            with unreachable_as_unavailable():
                await manager.__aexit__(None, None, None)

    translated.__translated__ = True  # type: ignore[attr-defined]
    return translated


def is_translated(method: Any) -> bool:
    """Return True when ``method`` was wrapped by ``translate_unreachable``."""
    return bool(getattr(method, "__translated__", False))


__all__ = [
    "DATABASE",
    "is_translated",
    "is_unreachable",
    "translate_unreachable",
    "unreachable_as_unavailable",
]
