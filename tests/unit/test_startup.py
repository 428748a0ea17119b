"""Start-up in words: what migrate did, where the database is, why it failed, what the schema lacks."""

from __future__ import annotations

import socket

import pytest
from asyncpg.exceptions import InvalidCatalogNameError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from sms_dispatch.adapters.database import MigrationReport
from sms_dispatch.adapters.schema_versions import SchemaState, describe_older
from sms_dispatch.errors import CannotStart
from sms_dispatch.startup import database_label, describe_migration, failure_reason, listen_socket


def report(
    before: str | None, after: str, *, created: bool = False, adopted: bool = False
) -> MigrationReport:
    """A migration report from ``before`` to ``after``."""
    return MigrationReport(
        before, after, "0010", created_messages_table=created, adopted_existing_table=adopted
    )


@pytest.mark.parametrize(
    ("done", "words"),
    [
        (report("0010", "0010"), "database schema already at head (0010)"),
        (report(None, "0010", created=True), "database schema created at 0010"),
        (
            report(None, "0010", adopted=True),
            "database schema created at 0010, adopting the Go service's messages table",
        ),
        (report("0008", "0010"), "database schema upgraded from 0008 to 0010"),
    ],
)
def test_migrate_says_what_it_did(done: MigrationReport, words: str) -> None:
    """Already at head, created, adopted or upgraded from X to Y: never "upgraded" for nothing."""
    assert describe_migration(done) == words


@pytest.mark.parametrize(
    ("url", "label"),
    [
        (
            "postgresql+asyncpg://app:s3cret@db.internal:5433/sms?ssl=require",
            "postgresql://app@db.internal:5433/sms",
        ),
        ("postgresql+asyncpg://db/sms", "postgresql://db/sms"),
        ("sqlite+aiosqlite:///data/sms-dispatch.db", "sqlite:///data/sms-dispatch.db"),
    ],
)
def test_the_database_label_names_host_and_database_never_the_password(url: str, label: str) -> None:
    """User, host, port and name; no password, no driver, no query."""
    assert database_label(make_url(url)) == label


def test_failure_reasons_are_one_line() -> None:
    """Refused, unknown host, timeout and a server's own error each read as one short line."""
    missing = DBAPIError("connect", {}, InvalidCatalogNameError('database "nope" does not exist'))
    assert failure_reason(missing) == 'database "nope" does not exist'
    assert failure_reason(ConnectionRefusedError(111, "Connect call failed")).startswith("connection refused")
    assert failure_reason(socket.gaierror(-2, "Name or service not known")) == (
        "host not found (Name or service not known)"
    )
    assert failure_reason(TimeoutError()) == "no answer in time"


def test_a_port_in_use_is_one_line_naming_it() -> None:
    """Binding a taken port raises CannotStart naming the address, the setting and the reason."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(CannotStart) as caught:
            listen_socket("127.0.0.1", port, setting="API_PORT")
    assert caught.value.message == f"cannot listen on 127.0.0.1:{port} (API_PORT): address already in use"


def state(
    current: str | None, *, known: bool = True, messages: bool = True, by: str | None = None
) -> SchemaState:
    """A schema state at ``current`` against a build whose head is 0010."""
    return SchemaState(current=current, head="0010", known=known, has_messages=messages, written_by=by)


def test_the_current_schema_is_no_reason_to_refuse() -> None:
    """At head every command may run."""
    assert state("0010").refusal("0.1.0") is None


@pytest.mark.parametrize(
    ("at", "shown"),
    [
        (state("0008"), "0008"),
        (state(None, messages=False), "none (empty database)"),
        (state(None), "none (the Go service's table, not yet adopted)"),
    ],
)
def test_an_older_schema_names_both_revisions_and_migrate(at: SchemaState, shown: str) -> None:
    """An older (or absent) schema: "is at X, this version needs Y: run `sms-dispatch migrate`"."""
    assert at.refusal("0.1.0") == (
        f"database schema is at {shown}, this version needs 0010: run `sms-dispatch migrate`"
    )


def test_a_newer_schema_names_the_version_that_wrote_it() -> None:
    """A schema this build does not know says which version wrote it and what to run."""
    refusal = state("0012", known=False, by="0.3.0").refusal("0.1.0")
    assert refusal == (
        "database schema is at 0012, written by sms-dispatch 0.3.0; this version (0.1.0) knows the"
        " schema up to 0010: run sms-dispatch 0.3.0 or newer"
    )


def test_a_newer_schema_without_a_record_still_refuses() -> None:
    """Without a schema_upgrades row the refusal says the writer is unknown."""
    refusal = state("0012", known=False).refusal("0.1.0")
    assert refusal is not None and "did not record itself" in refusal and "a newer sms-dispatch" in refusal


def test_older_instances_are_named_with_the_override() -> None:
    """The refusal to upgrade lists the older instances and both ways to override it."""
    found = [(f"worker-{n}", "0.0.9") for n in range(7)]
    refusal = describe_older(found, before="0009", head="0010")
    assert "from 0009 to 0010" in refusal and "7 instance(s)" in refusal
    assert "worker-0 (0.0.9)" in refusal and "and 2 more" in refusal
    assert "MIGRATE_ALLOW_OLDER_INSTANCES=true" in refusal and "--allow-older-instances" in refusal
