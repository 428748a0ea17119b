"""The log set-up: Alembic's preamble only at DEBUG, log levels in any case."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from sms_dispatch.logs import configure_logging

ALEMBIC = "alembic.runtime.migration"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def alembic_lines(level: str) -> str:
    """Log what Alembic logs when it looks at a schema and upgrades it; return the output."""
    stream = io.StringIO()
    configure_logging(json_lines=True, level=level, stream=stream)
    migration = logging.getLogger(ALEMBIC)
    migration.info("Context impl %s.", "PostgresqlImpl")
    migration.info("Will assume %s DDL.", "transactional")
    migration.info("Running upgrade %s -> %s, %s", "0009", "0010", "Record who upgraded the schema")
    return stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_alembic_preamble_is_not_logged_at_info() -> None:
    """At INFO the "Context impl" and "Will assume" lines are gone; the upgrade line stays."""
    output = alembic_lines("INFO")
    assert "Context impl" not in output and "Will assume" not in output
    assert "Running upgrade 0009 -> 0010" in output


@pytest.mark.usefixtures("restore_logging")
def test_alembic_preamble_is_logged_at_debug_as_debug() -> None:
    """At DEBUG the preamble is there, marked debug."""
    output = alembic_lines("debug")
    preamble = [line for line in output.splitlines() if "Context impl" in line]
    assert len(preamble) == 1 and '"level": "debug"' in preamble[0]
