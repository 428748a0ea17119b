"""Opening the database at start-up, on real databases: who migrates, who refuses, and why.

``serve`` and ``migrate`` upgrade (``schema="upgrade"``), refusing while instances of an older
version send heartbeats; every other command checks (``schema="check"``) and names what to run.
A database that cannot be reached or used is one line naming where, never the password.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch import __version__
from sms_dispatch.adapters.database import build_head, create_engine
from sms_dispatch.adapters.tables import instances, schema_upgrades
from sms_dispatch.clock import SystemClock
from sms_dispatch.config import Settings
from sms_dispatch.errors import CannotStart
from sms_dispatch.startup import OpenDatabase, SchemaPolicy, open_database
from tests.e2e.conftest import free_port
from tests.schema_helpers import migrate_to

HEAD = build_head()


def settings_on(url: str, **values: Any) -> Settings:
    """Settings on the database at ``url`` (nothing from the environment)."""
    return Settings(_env_file=None, DATABASE_URL=url, **values)  # type: ignore[call-arg]


async def opened(settings: Settings, schema: SchemaPolicy) -> OpenDatabase:
    """Open the database as a command would, then close it again; return what was opened."""
    async with contextlib.AsyncExitStack() as stack:
        return await open_database(settings, schema=schema, clock=SystemClock(), stack=stack)


async def refusal(settings: Settings, schema: SchemaPolicy) -> str:
    """Return the one line ``open_database`` stops with."""
    with pytest.raises(CannotStart) as caught:
        await opened(settings, schema)
    assert "\n" not in caught.value.message
    return caught.value.message


@contextlib.asynccontextmanager
async def engine_on(pg_url: str) -> Any:
    """An engine on ``pg_url`` for the test's own reads and writes."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+asyncpg"), pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def move_to(engine: AsyncEngine, revision: str) -> None:
    """Migrate the schema to ``revision`` (the way an older build left it)."""
    async with engine.begin() as connection:
        await connection.run_sync(migrate_to, revision)


async def revision_of(engine: AsyncEngine) -> str:
    """Return the database's schema revision."""
    async with engine.connect() as connection:
        return str((await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one())


async def add_instance(engine: AsyncEngine, name: str, version: str, *, seen_s_ago: float = 1.0) -> None:
    """Insert an instance row as a running dispatcher's heartbeat leaves it."""
    seen = datetime.now(UTC) - timedelta(seconds=seen_s_ago)
    row = {
        "name": name,
        "host": "h",
        "pid": 1,
        "version": version,
        "started_at": seen,
        "last_heartbeat_at": seen,
    }
    async with engine.begin() as connection:
        await connection.execute(insert(instances).values(row))


@pytest.mark.postgres
async def test_commands_that_do_not_migrate_refuse_an_empty_database(pg_url: str) -> None:
    """`worker`, `seed`, ... on an empty database: the schema is at none, run migrate."""
    message = await refusal(settings_on(pg_url), "check")
    assert (
        message
        == f"database schema is at none (empty database), this version needs {HEAD}: run `sms-dispatch migrate`"
    )


@pytest.mark.postgres
async def test_commands_that_do_not_migrate_refuse_an_older_schema_and_leave_it(pg_url: str) -> None:
    """On a schema an older build left (0008) the refusal names both revisions; nothing is upgraded."""
    async with engine_on(pg_url) as engine:
        await move_to(engine, "0008")
        message = await refusal(settings_on(pg_url), "check")
        assert message == f"database schema is at 0008, this version needs {HEAD}: run `sms-dispatch migrate`"
        assert await revision_of(engine) == "0008"


@pytest.mark.postgres
async def test_an_upgrade_records_the_version_that_made_it(pg_url: str) -> None:
    """The migrate step writes who upgraded from what to what, in schema_upgrades; check then passes."""
    async with engine_on(pg_url) as engine:
        await move_to(engine, "0009")
        done = await opened(settings_on(pg_url), "upgrade")
        assert done.migration is not None and done.revision == HEAD
        async with engine.connect() as connection:
            rows = (await connection.execute(select(schema_upgrades))).all()
        assert [(r.revision_from, r.revision_to, r.version) for r in rows] == [("0009", HEAD, __version__)]
        assert (await opened(settings_on(pg_url), "check")).revision == HEAD


@pytest.mark.postgres
async def test_an_upgrade_waits_for_older_instances_to_stop(pg_url: str) -> None:
    """An instance of an older version with a fresh heartbeat blocks the upgrade; the schema stays."""
    async with engine_on(pg_url) as engine:
        await move_to(engine, "0009")
        await add_instance(engine, "old-worker", "0.0.9")
        message = await refusal(settings_on(pg_url), "upgrade")
        assert "not upgrading the schema from 0009" in message and "old-worker (0.0.9)" in message
        assert "MIGRATE_ALLOW_OLDER_INSTANCES=true" in message
        assert await revision_of(engine) == "0009"


@pytest.mark.postgres
async def test_the_older_instance_check_can_be_overridden(pg_url: str) -> None:
    """MIGRATE_ALLOW_OLDER_INSTANCES=true upgrades even so."""
    async with engine_on(pg_url) as engine:
        await move_to(engine, "0009")
        await add_instance(engine, "old-worker", "0.0.9")
        await opened(settings_on(pg_url, MIGRATE_ALLOW_OLDER_INSTANCES="true"), "upgrade")
        assert await revision_of(engine) == HEAD


@pytest.mark.postgres
async def test_our_own_name_left_by_an_older_build_does_not_block_its_upgrade(pg_url: str) -> None:
    """An instance restarted into a newer build within the heartbeat window finds its own old row:
    that is not another instance still sending, so the upgrade goes on."""
    async with engine_on(pg_url) as engine:
        await move_to(engine, "0009")
        await add_instance(engine, "web-1", "0.0.9")
        await opened(settings_on(pg_url, INSTANCE_NAME="web-1"), "upgrade")
        assert await revision_of(engine) == HEAD


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("version", "seen_s_ago"),
    [("0.0.9", 60.0), (__version__, 1.0), ("99.0.0", 1.0)],
    ids=["gone", "same", "newer"],
)
async def test_only_live_older_instances_block_an_upgrade(
    pg_url: str, version: str, seen_s_ago: float
) -> None:
    """A heartbeat older than 3 periods, or an instance not older than this build, does not block."""
    async with engine_on(pg_url) as engine:
        await move_to(engine, "0009")
        await add_instance(engine, "other", version, seen_s_ago=seen_s_ago)
        await opened(settings_on(pg_url), "upgrade")
        assert await revision_of(engine) == HEAD


@pytest.mark.postgres
async def test_a_newer_schema_names_the_version_that_wrote_it(pg_url: str) -> None:
    """A schema past this build's head (as a newer build leaves it): both policies refuse, naming it."""
    async with engine_on(pg_url) as engine:
        await opened(settings_on(pg_url), "upgrade")
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
            row = {
                "revision_from": HEAD,
                "revision_to": "0099",
                "version": "9.9.9",
                "upgraded_at": datetime.now(UTC),
            }
            await connection.execute(insert(schema_upgrades).values(row))
        for schema in ("check", "upgrade"):
            message = await refusal(settings_on(pg_url), schema)  # type: ignore[arg-type]
            assert message.startswith("database schema is at 0099, written by sms-dispatch 9.9.9;")
            assert f"knows the schema up to {HEAD}" in message
        assert await revision_of(engine) == "0099"


@pytest.mark.postgres
async def test_an_unreachable_database_is_one_line_without_the_password(pg_url: str) -> None:
    """Nothing listening: where (user, host, port, name, the variable) and why; no password."""
    port = free_port()
    message = await refusal(settings_on(f"postgresql://app:hunter2@127.0.0.1:{port}/sms"), "check")
    assert message.startswith(
        f"cannot use the database postgresql://app@127.0.0.1:{port}/sms (DATABASE_URL):"
    )
    assert "connection refused" in message and "hunter2" not in message


@pytest.mark.postgres
async def test_a_missing_database_or_role_is_named(pg_url: str) -> None:
    """A database or role that does not exist: the server's own words, after where."""
    base = pg_url.rsplit("/", 1)[0]
    missing_db = await refusal(settings_on(f"{base}/no_such_db_here"), "upgrade")
    assert missing_db.endswith('/no_such_db_here (DATABASE_URL): database "no_such_db_here" does not exist')
    host = make_url(pg_url).host
    pieces = {"DB_HOST": host, "DB_USER": "no_such_role", "DB_PASSWORD": "pw-7f3a", "DB_NAME": "postgres"}
    missing_role = await refusal(Settings(_env_file=None, **pieces), "check")  # type: ignore[call-arg]
    assert "(DB_HOST, DB_PORT, DB_USER, DB_NAME)" in missing_role
    assert 'role "no_such_role" does not exist' in missing_role and "pw-7f3a" not in missing_role


async def test_check_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    """A command that does not migrate, on a SQLite file not there yet, refuses and creates nothing."""
    path = tmp_path / "new.db"
    settings = Settings(_env_file=None, SQLITE_PATH=path)  # type: ignore[call-arg]
    message = await refusal(settings, "check")
    assert message.startswith(
        f"database schema is at none (no database file {path} yet), this version needs {HEAD}"
    )
    assert "sms-dispatch migrate" in message and not path.exists()


async def test_a_sqlite_upgrade_records_its_writer(tmp_path: Path) -> None:
    """On SQLite too: created at head, one schema_upgrades row, then check passes."""
    settings = Settings(_env_file=None, SQLITE_PATH=tmp_path / "s.db")  # type: ignore[call-arg]
    done = await opened(settings, "upgrade")
    assert done.migration is not None and done.migration.created_messages_table
    async with contextlib.AsyncExitStack() as stack:
        again = await open_database(settings, schema="check", clock=SystemClock(), stack=stack)
        async with again.engine.connect() as connection:
            rows = (
                await connection.execute(select(schema_upgrades.c.revision_from, schema_upgrades.c.version))
            ).all()
    assert [tuple(r) for r in rows] == [(None, __version__)]
