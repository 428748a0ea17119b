"""The engine and the schema migrations, for SQLite and PostgreSQL.

``create_engine`` tunes each backend once, when a connection opens; ``migrate`` runs the
Alembic migrations shipped inside the package (so an installed wheel can migrate) on the
given engine, one instance at a time, and records which version ran them; ``schema_state``
tells the commands that do not migrate whether the schema is the one this build needs.

Staying safe across a PostgreSQL restart without a pre-ping: SQLAlchemy's ``pool_pre_ping``
costs three round trips per checkout on asyncpg (BEGIN, an empty query, ROLLBACK), more than a
whole listing. Instead a checkout asks asyncpg whether the server closed the connection, which
costs nothing: a restarting server closes every session, asyncpg sees the socket close at once
and ``is_closed()`` turns true, and the pool then throws the connection away and opens another.
A connection that breaks during a statement is caught by SQLAlchemy (a disconnect error
invalidates it and every older pooled connection); callers that can repeat a read do so once
(``sql_listing.py``), the dispatcher retries its own work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from sms_dispatch import __version__
from sms_dispatch.adapters.schema_versions import (
    SchemaState,
    describe_older,
    older_instances,
    read_state,
    record_upgrade,
)
from sms_dispatch.errors import CannotStart
from sms_dispatch.logs import get_logger

log = get_logger(__name__)

SCRIPT_LOCATION = "sms_dispatch:migrations"
"""Where Alembic finds env.py and the versions: a folder of the installed package."""

MIGRATION_LOCK_KEY = 0x736D7364_6D696772  # 'smsdmigr': one advisory lock id for every instance
SQLITE_BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What ``migrate`` found and did."""

    revision_before: str | None
    revision_after: str | None
    head: str
    created_messages_table: bool
    """True when there was no ``messages`` table before: the database was new (seed it)."""
    adopted_existing_table: bool
    """True when an unversioned ``messages`` table (the Go service's) was taken over."""


def create_engine(url: URL, *, pool_size: int) -> AsyncEngine:
    """Return an async engine for ``url``, tuned for its backend; nothing connects yet."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, pool_size=pool_size)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,  # pool_size is the budget of connections per instance, not a floor
        connect_args={"server_settings": {"application_name": "sms-dispatch"}},
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Make the pool replace a connection the server has closed (no round trip: see the module)."""
    if record.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


_lenient_text = functools.partial(bytes.decode, encoding="utf-8", errors="replace")
"""How SQLite text is read: UTF-8, any byte that is not valid UTF-8 as U+FFFD."""


def _sqlite_engine(url: URL, *, pool_size: int) -> AsyncEngine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # Every connection to ':memory:' is a separate database: share one.
        engine = create_async_engine(url, poolclass=StaticPool)
    else:
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _tune(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN (below) decide where transactions start, not the sqlite3
        # module, which skips BEGIN before DDL and reads: migrations then roll back as a whole.
        dbapi_connection.isolation_level = None
        # Text another program stored with bytes that are not UTF-8 is read with U+FFFD in
        # their place: by default sqlite3 raises, and one such row failed every claim.
        dbapi_connection.driver_connection.text_factory = _lenient_text
        cursor = dbapi_connection.cursor()
        if not in_memory:
            # WAL lets readers run while one writer commits; NORMAL is durable enough with WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def alembic_config() -> Config:
    """Return the Alembic configuration of the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


async def migrate(
    engine: AsyncEngine,
    *,
    version: str = __version__,
    older_instances_seen_since: datetime | None = None,
    own_instance: str | None = None,
) -> MigrationReport:
    """Upgrade the database to the newest revision, record ``version`` as its writer, report.

    On PostgreSQL the whole upgrade is one transaction holding an advisory lock, so instances
    starting together take turns and the later ones find the work done. ``CannotStart`` when
    the schema is newer than this build knows, or (given ``older_instances_seen_since``) when
    an upgrade is due while instances of an older version sent heartbeats since then (but
    ``own_instance``: this process's own name, whose last heartbeat an older build may have left).
    """
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        report = await connection.run_sync(
            _upgrade,
            version=version,
            older_instances_seen_since=older_instances_seen_since,
            own_instance=own_instance,
        )
        await connection.run_sync(restore_go_automigrate_losses)
        await connection.commit()
    return report


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """Return the database's schema revision beside the one this build needs (nothing changes)."""
    async with engine.connect() as connection:
        return await connection.run_sync(read_state, _script())


def build_head() -> str:
    """Return the newest schema revision this build ships (the one every command needs)."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise RuntimeError("no migrations found in the package")
    return head


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _upgrade(
    connection: Connection,
    *,
    version: str,
    older_instances_seen_since: datetime | None,
    own_instance: str | None,
) -> MigrationReport:
    state = read_state(connection, _script())
    if not state.known:
        raise CannotStart(state.too_new(version))
    if not state.at_head and older_instances_seen_since is not None:
        older = older_instances(
            connection, version=version, seen_since=older_instances_seen_since, excluding=own_instance
        )
        if older:
            raise CannotStart(describe_older(older, before=state.current, head=state.head))
    before = state.current
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = _current_revision(connection)
    if after is not None and after != before:
        record_upgrade(connection, before=before, after=after, version=version, now=datetime.now(UTC))
    return MigrationReport(
        revision_before=before,
        revision_after=after,
        head=state.head,
        created_messages_table=not state.has_messages,
        adopted_existing_table=state.has_messages and before is None,
    )


# What the Go service's AutoMigrate (its seed command) takes from `messages`: its model declares
# no default and no NOT NULL for these, so every run drops ours. column -> (the default, what
# fills a NULL before NOT NULL is set again; None: the column is the key, never NULL).
GO_AUTOMIGRATE_LOSSES = {
    "id": ("gen_random_uuid()", None),
    "status": ("'PENDING'", "'PENDING'"),
    "created_at": ("now()", "coalesce(updated_at, now())"),
    "updated_at": ("now()", "coalesce(created_at, now())"),
}
_MESSAGES_COLUMNS = text(
    "SELECT column_name, column_default IS NOT NULL, is_nullable = 'YES' FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = 'messages'"
)


def restore_go_automigrate_losses(connection: Connection) -> list[str]:
    """Put back the defaults and NOT NULL the Go service's AutoMigrate dropped; log what, if any.

    A repair, not a revision: the Go seed command may run again at any time after a migration.
    Without it a plain-SQL ``INSERT INTO messages ("to", content)`` gets no id, status or times.
    A NULL the column held meanwhile is filled first, as migration 0001 adopts such rows. Costs
    one catalog read when nothing is missing (PostgreSQL only: the Go service never ran on SQLite).
    """
    if connection.dialect.name != "postgresql":
        return []
    found = {
        name: (has_default, nullable) for name, has_default, nullable in connection.execute(_MESSAGES_COLUMNS)
    }
    changes: list[str] = []
    restored: list[str] = []
    for column, (default, fill) in GO_AUTOMIGRATE_LOSSES.items():
        if column not in found:
            continue
        has_default, nullable = found[column]
        if not has_default:
            changes.append(f'ALTER COLUMN "{column}" SET DEFAULT {default}')
            restored.append(f"{column} DEFAULT {default}")
        if nullable and fill is not None:
            connection.execute(text(f'UPDATE messages SET "{column}" = {fill} WHERE "{column}" IS NULL'))  # noqa: S608
            changes.append(f'ALTER COLUMN "{column}" SET NOT NULL')
            restored.append(f"{column} NOT NULL")
    if changes:
        # One statement: one lock, one scan of the table for every NOT NULL at once.
        connection.execute(text("ALTER TABLE messages " + ", ".join(changes)))
        log.warning(
            "restored what the Go service's AutoMigrate took from the messages table", restored=restored
        )
    return restored


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
