"""An outage is told from a bug: the first logs one line per outage, the second its traceback."""

from __future__ import annotations

import io
import json

import asyncpg
import pytest
import sqlalchemy.exc
import structlog

from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.faults import is_outage, log_failure
from sms_dispatch.logs import configure_logging, get_logger
from sms_dispatch.observability.outages import OutageLog


def wrapped(orig: BaseException, *, invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    """Wrap ``orig`` as SQLAlchemy does a driver's error."""
    error = sqlalchemy.exc.DBAPIError.instance(
        "SELECT 1", None, orig, Exception, connection_invalidated=invalidated
    )
    assert isinstance(error, sqlalchemy.exc.DBAPIError)
    return error


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    """Return ``outer`` raised from ``cause``."""
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    "error",
    [
        DependencyUnavailable(),
        ConnectionRefusedError(111, "Connect call failed"),
        OSError("Network is unreachable"),
        TimeoutError(),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 0 reached"),
        sqlalchemy.exc.OperationalError("SELECT 1", None, Exception("server closed the connection")),
        sqlalchemy.exc.InterfaceError("SELECT 1", None, Exception("connection is closed")),
        wrapped(Exception("terminating connection"), invalidated=True),
        wrapped(chained(Exception("adapted"), asyncpg.AdminShutdownError("terminating connection"))),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_dependency_away_is_an_outage(error: BaseException) -> None:
    """Unreachable, timed out, invalidated or shut-down connections are outages."""
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        KeyError("claim_token"),
        ValueError("bad row"),
        sqlalchemy.exc.IntegrityError("INSERT", None, Exception("duplicate key")),
        sqlalchemy.exc.ProgrammingError("SELEC 1", None, Exception("syntax error")),
        wrapped(Exception("division by zero")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_anything_else_is_a_bug(error: BaseException) -> None:
    """A constraint, a syntax error or a plain exception is no outage."""
    assert not is_outage(error)


def test_an_error_met_while_handling_an_outage_is_still_a_bug() -> None:
    """Only an explicit cause counts: a KeyError raised while handling an OSError is a bug."""
    error = KeyError("x")
    error.__context__ = OSError("refused")
    assert not is_outage(error)


def test_log_failure_logs_an_outage_once_and_a_bug_every_time() -> None:
    """Three outage failures are one line without a traceback; each bug is a line with one."""
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    logger = get_logger("test")
    outage = OutageLog("database", "claiming", logger=logger)
    for error in (OSError("refused"), KeyError("a"), OSError("refused"), KeyError("b"), TimeoutError()):
        log_failure(error, "claiming failed", outage=outage, logger=logger)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    structlog.reset_defaults()
    assert [line["event"] for line in lines] == ["database unavailable", "claiming failed", "claiming failed"]
    assert "exception" not in lines[0]
    assert all("KeyError" in line["exception"] for line in lines[1:])
