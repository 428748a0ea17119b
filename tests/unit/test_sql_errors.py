"""The SQL store's one translation: an unreachable database is ``DependencyUnavailable``, a bug is not."""

from __future__ import annotations

import contextlib
import inspect
import sqlite3
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import exc as sa_exc

from sms_dispatch.adapters.sql_errors import is_translated, is_unreachable, translate_unreachable
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.errors import DependencyUnavailable


def wrapped(
    orig: BaseException, kind: type[sa_exc.DBAPIError] = sa_exc.DBAPIError, **extra: bool
) -> BaseException:
    """Return ``orig`` as SQLAlchemy raises it: wrapped, with the driver's error as the cause."""
    error = kind("SELECT 1", {}, orig, **extra)
    error.__cause__ = orig
    return error


def sqlite_error(name: str, message: str) -> sqlite3.OperationalError:
    """Return a sqlite3 error carrying the result code name sqlite3 sets on raised errors."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorname = name
    return error


def a_real_sqlite_statement_error() -> sqlite3.OperationalError:
    """Return the error sqlite3 itself raises for a statement on a table that does not exist."""
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:
        try:
            connection.execute("SELECT * FROM nowhere")
        except sqlite3.OperationalError as error:
            return error
    raise AssertionError("sqlite3 accepted a statement on a missing table")


def closed_by_asyncpg() -> BaseException:
    """Return asyncpg's "connection was closed" error as the asyncpg dialect raises it to SQLAlchemy."""
    driver = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    adapted = Exception(str(driver))
    adapted.__cause__ = driver
    return wrapped(adapted)


UNREACHABLE = {
    "connect refused": ConnectionRefusedError(111, "Connect call failed"),
    "connection reset": ConnectionResetError(104, "Connection reset by peer"),
    "connect timed out": TimeoutError(),
    "invalidated by SQLAlchemy": wrapped(Exception("closed"), connection_invalidated=True),
    "asyncpg connection closed": closed_by_asyncpg(),
    "server shut down": wrapped(asyncpg.AdminShutdownError("terminating connection")),
    "server starting up": wrapped(asyncpg.CannotConnectNowError("the database system is starting up")),
    "too many connections": wrapped(asyncpg.TooManyConnectionsError("too many clients")),
    "operational error": wrapped(Exception("server closed the connection"), sa_exc.OperationalError),
    "interface error": wrapped(Exception("connection is closed"), sa_exc.InterfaceError),
    "sqlite cannot open": wrapped(sqlite_error("SQLITE_CANTOPEN", "unable to open"), sa_exc.OperationalError),
    "sqlite locked": wrapped(sqlite_error("SQLITE_BUSY", "database is locked"), sa_exc.OperationalError),
    "pool timeout": sa_exc.TimeoutError("QueuePool limit of size 4 overflow 0 reached"),
}
NOT_UNREACHABLE = {
    "constraint": wrapped(Exception("duplicate key"), sa_exc.IntegrityError),
    "wrong statement on PostgreSQL": wrapped(Exception("syntax error"), sa_exc.ProgrammingError),
    "wrong statement on SQLite": wrapped(a_real_sqlite_statement_error(), sa_exc.OperationalError),
    "statement timeout": wrapped(asyncpg.QueryCanceledError("canceling statement due to statement timeout")),
    "a bug": ValueError("bad value"),
    "already translated": DependencyUnavailable("the database does not answer"),
}


@pytest.mark.parametrize("error", UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_unreachable_database_errors(error: BaseException) -> None:
    """Connection failures, whatever the driver calls them, mean the database cannot be reached."""
    assert is_unreachable(error)


@pytest.mark.parametrize("error", NOT_UNREACHABLE.values(), ids=NOT_UNREACHABLE.keys())
def test_other_errors_are_not_outages(error: BaseException) -> None:
    """Constraint violations, wrong statements (SQLite's too) and plain bugs are not outages."""
    assert not is_unreachable(error)


def test_an_implicit_context_is_not_a_cause() -> None:
    """An error raised while handling a connection error is judged by itself, not by the earlier one."""
    error = ValueError("a bug in the handler")
    error.__context__ = ConnectionResetError(104, "reset")
    assert not is_unreachable(error)


def test_every_public_store_method_is_translated() -> None:
    """Every public coroutine and async context manager of the SQL store, mixins included, is wrapped."""
    public = {
        name: getattr(SqlMessageStore, name)
        for name in dir(SqlMessageStore)
        if not name.startswith("_") and callable(getattr(SqlMessageStore, name))
    }
    async_methods = {
        name
        for name, method in public.items()
        if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(inspect.unwrap(method))
    }
    assert {
        "create",
        "get",
        "claim_due",
        "finish",
        "list_sent",
        "retry",
        "exclusive",
        "ping",
    } <= async_methods
    assert {name for name in async_methods if not is_translated(public[name])} == set()


@translate_unreachable
class Flaky:
    """A store whose calls fail as told."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    async def read(self) -> int:
        """Fail with the error, else answer 1."""
        if self.error is not None:
            raise self.error
        return 1

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[bool]:
        """Fail entering with the error, else hold."""
        if self.error is not None:
            raise self.error
        yield True


async def test_a_translated_method_raises_dependency_unavailable_with_the_cause() -> None:
    """An unreachable database surfaces as DependencyUnavailable naming the database, the error as cause."""
    refused = ConnectionRefusedError(111, "Connect call failed")
    with pytest.raises(DependencyUnavailable) as raised:
        await Flaky(refused).read()
    assert raised.value.dependency == "database"
    assert raised.value.message == "the database does not answer"
    assert raised.value.__cause__ is refused
    assert await Flaky(None).read() == 1


async def test_a_bug_passes_through_unchanged() -> None:
    """An error that is not an outage reaches the caller as it was raised."""
    bug = KeyError("id")
    with pytest.raises(KeyError) as raised:
        await Flaky(bug).read()
    assert raised.value is bug


async def test_a_context_manager_translates_its_own_errors_not_the_callers() -> None:
    """Entering a translated lock on a gone database is DependencyUnavailable; the body's errors stay."""
    with pytest.raises(DependencyUnavailable):
        async with Flaky(ConnectionResetError(104, "reset")).locked():
            pass

    async def fail_inside() -> None:
        async with Flaky(None).locked():
            raise ConnectionResetError(104, "the caller's own connection")

    with pytest.raises(ConnectionResetError):
        await fail_inside()
