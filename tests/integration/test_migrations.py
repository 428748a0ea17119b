"""Migrations on real databases: a new PostgreSQL or SQLite database, and adopting the Go
service's ``messages`` table (made by GORM AutoMigrate, without database defaults) in place."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, inspect, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import alembic_config, create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import metadata
from sms_dispatch.domain import NewMessage, Status
from tests.go_service import GO_SCHEMA
from tests.schema_helpers import migrate_to

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
GO_ROWS: dict[str, dict[str, Any]] = {
    "pending": {"status": "PENDING", "created_at": T0},
    "deleted": {"status": "PENDING", "created_at": T0, "deleted_at": T0 + timedelta(minutes=1)},
    "success": {
        "status": "SUCCESS",
        "created_at": T0,
        "message_id": "67f2f8a8-ea58-4ed0-a6f9-ff217df4d849",
        "raw_response": '{"message":"Accepted","messageId":"67f2f8a8-ea58-4ed0-a6f9-ff217df4d849"}',
        "sent_at": T0 + timedelta(minutes=2),
    },
    "failed": {"status": "FAILED", "created_at": T0, "raw_response": '{"error":"bad number"}'},
    "hand_no_created_at": {"status": "PENDING", "created_at": None},
    "hand_no_status": {"status": None, "created_at": T0},
}
KEPT = ("id", "to", "content", "message_id", "raw_response", "sent_at", "deleted_at")
PLAIN_INSERT = """INSERT INTO messages ("to", content) VALUES ('+905551111111', 'hi') RETURNING id"""


async def migrated(url: URL) -> AsyncEngine:
    """Return an engine on ``url`` after migrating it."""
    engine = create_engine(url, pool_size=2)
    await migrate(engine)
    return engine


async def fetch(engine: AsyncEngine, sql: str) -> list[dict[str, Any]]:
    """Run ``sql`` in its own committed transaction; return its rows as dicts."""
    async with engine.begin() as connection:
        return [dict(row._mapping) for row in await connection.execute(text(sql))]


def schema_differences(connection: Connection) -> list[Any]:
    """Return how the database differs from ``tables.metadata`` (types and defaults included)."""
    options = {"compare_type": True, "compare_server_default": True}
    return compare_metadata(MigrationContext.configure(connection, opts=options), metadata)


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh, empty PostgreSQL database (not migrated)."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+asyncpg"), pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def go_db(pg: AsyncEngine) -> dict[str, UUID]:
    """The Go service's table with one row per case, not migrated; return the ids by case."""
    ids = {case: uuid4() for case in GO_ROWS}
    async with pg.begin() as connection:
        for statement in GO_SCHEMA:
            await connection.execute(text(statement))
        for n, (case, row) in enumerate(GO_ROWS.items()):
            values = {"id": ids[case], "to": f"+9055500000{n:02d}", "content": f"go {case}", **row}
            values = {"message_id": None, "raw_response": None, "sent_at": None, "deleted_at": None} | values
            values["updated_at"] = row["created_at"]
            await connection.execute(
                text(
                    'INSERT INTO messages (id, "to", content, status, raw_response, message_id, sent_at,'
                    " created_at, updated_at, deleted_at) VALUES (:id, :to, :content, :status,"
                    " :raw_response, :message_id, :sent_at, :created_at, :updated_at, :deleted_at)"
                ),
                values,
            )
    return ids


@pytest.mark.postgres
async def test_adoption_keeps_every_row_and_its_data(pg: AsyncEngine, go_db: dict[str, UUID]) -> None:
    """Adopting the Go table loses no row and changes none of its data columns."""
    before = await fetch(pg, "SELECT * FROM messages ORDER BY id")
    report = await migrate(pg)
    after = await fetch(pg, "SELECT * FROM messages ORDER BY id")
    assert (report.adopted_existing_table, report.created_messages_table) == (True, False)
    assert [{k: r[k] for k in KEPT} for r in after] == [{k: r[k] for k in KEPT} for r in before]
    by_id = {row["id"]: row for row in after}
    assert by_id[go_db["hand_no_status"]]["status"] == "PENDING"
    assert by_id[go_db["success"]]["status"] == "SUCCESS"
    assert by_id[go_db["pending"]]["created_at"] == T0


@pytest.mark.postgres
async def test_adoption_backfills_attempts_and_next_attempt_at(
    pg: AsyncEngine, go_db: dict[str, UUID]
) -> None:
    """Existing rows get attempts (1 if sent or failed, else 0) and next_attempt_at = created_at."""
    await migrate(pg)
    rows = {
        r["id"]: r for r in await fetch(pg, "SELECT id, attempts, next_attempt_at, created_at FROM messages")
    }
    attempts = {case: rows[id_]["attempts"] for case, id_ in go_db.items()}
    assert attempts == {case: 1 if case in {"success", "failed"} else 0 for case in go_db}
    assert rows[go_db["pending"]]["next_attempt_at"] == T0
    filled = rows[go_db["hand_no_created_at"]]
    assert filled["next_attempt_at"] == filled["created_at"]
    assert abs(filled["created_at"] - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.postgres
async def test_adopted_soft_deleted_row_is_never_claimed(pg: AsyncEngine, go_db: dict[str, UUID]) -> None:
    """After adoption only the live PENDING rows are claimed; sent, failed and deleted rows stay."""
    await migrate(pg)
    claimed = await SqlMessageStore(pg).claim_due(
        limit=100, now=datetime.now(UTC) + timedelta(seconds=1), lease_s=30, claim_token="t", claimed_by="w"
    )
    assert {m.id for m in claimed} == {go_db[c] for c in ("pending", "hand_no_created_at", "hand_no_status")}
    assert await SqlMessageStore(pg).get(go_db["deleted"]) is None


@pytest.mark.postgres
async def test_adopted_table_gives_plain_sql_inserts_defaults(
    pg: AsyncEngine, go_db: dict[str, UUID]
) -> None:
    """After adoption a plain-SQL insert of "to" and content gets id, PENDING and times."""
    await migrate(pg)
    [row] = await fetch(pg, PLAIN_INSERT.replace("RETURNING id", "RETURNING *"))
    assert (row["id"].version, row["status"], row["attempts"], row["deleted_at"]) == (4, "PENDING", 0, None)
    assert row["created_at"] == row["updated_at"] == row["next_attempt_at"]
    message = await SqlMessageStore(pg).get(row["id"])
    assert message is not None
    assert message.status is Status.PENDING


@pytest.mark.postgres
async def test_adopted_table_takes_longer_recipients_and_content(
    pg: AsyncEngine, go_db: dict[str, UUID]
) -> None:
    """The widened columns hold a 32-character recipient and content beyond 255 characters."""
    await migrate(pg)
    store = SqlMessageStore(pg)
    created = await store.create(NewMessage("+" + "9" * 31, "x" * 1000), now=datetime.now(UTC))
    assert await store.get(created.id) == created


@pytest.mark.postgres
async def test_adopted_schema_matches_tables_module(pg: AsyncEngine, go_db: dict[str, UUID]) -> None:
    """The adopted table has the columns, types, defaults and indexes of a new one, plus Go's indexes."""
    await migrate(pg)
    async with pg.connect() as connection:
        differences = await connection.run_sync(schema_differences)
        indexes = await connection.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("messages")})
    go_indexes = {"idx_messages_message_id", "idx_messages_sent_at", "idx_messages_created_at"} | {
        "idx_messages_deleted_at"
    }
    expected = {("remove_index", name) for name in go_indexes} | {("add_index", "ix_messages_message_id")}
    assert {(d[0], d[1].name) for d in differences if d[0] in {"add_index", "remove_index"}} == expected
    # The table comment marks the adoption, so a downgrade knows not to drop the Go rows.
    assert [d[0] for d in differences if d[0] not in {"add_index", "remove_index"}] == [
        "remove_table_comment"
    ]
    assert {"ix_messages_due", "ix_messages_sent", "ix_messages_lease", "idx_messages_message_id"} <= indexes


@pytest.mark.postgres
async def test_migrate_twice_changes_nothing(pg: AsyncEngine, go_db: dict[str, UUID]) -> None:
    """A second migrate finds the database at head and leaves every row as it was."""
    first = await migrate(pg)
    rows = await fetch(pg, "SELECT * FROM messages ORDER BY id")
    second = await migrate(pg)
    assert (first.revision_after, second.revision_before, second.revision_after) == (HEAD, HEAD, HEAD)
    assert (second.created_messages_table, second.adopted_existing_table) == (False, False)
    assert await fetch(pg, "SELECT * FROM messages ORDER BY id") == rows


@pytest.mark.postgres
async def test_downgrade_of_an_adopted_table_keeps_its_rows(pg: AsyncEngine, go_db: dict[str, UUID]) -> None:
    """Downgrading an adopted table drops only what was added; every Go row remains."""
    await migrate(pg)
    async with pg.connect() as connection:
        await connection.run_sync(migrate_to, "base", down=True)
        await connection.commit()
        columns = await connection.run_sync(
            lambda c: {col["name"] for col in inspect(c).get_columns("messages")}
        )
    assert columns == {"id", "to", "content", "status", "raw_response", "message_id", "sent_at"} | {
        "created_at", "updated_at", "deleted_at"
    }  # fmt: skip
    assert len(await fetch(pg, "SELECT id FROM messages")) == len(GO_ROWS)


@pytest.mark.postgres
async def test_new_postgres_database_gets_the_whole_schema(pg: AsyncEngine) -> None:
    """An empty database is created at head, matching tables.py, with the scheduler running."""
    report = await migrate(pg)
    assert (report.revision_before, report.revision_after, report.created_messages_table) == (
        None,
        HEAD,
        True,
    )
    async with pg.connect() as connection:
        assert await connection.run_sync(schema_differences) == []
    assert await fetch(pg, "SELECT id, running, last_run_at FROM scheduler_state") == [
        {"id": 1, "running": True, "last_run_at": None}
    ]


@pytest.mark.postgres
async def test_instances_migrating_at_once_take_turns(pg: AsyncEngine, pg_url: str) -> None:
    """Several instances starting together: one creates the schema, the others find it done."""
    others = [create_engine(pg.url, pool_size=1) for _ in range(3)]
    try:
        reports = await asyncio.gather(*(migrate(engine) for engine in [pg, *others]))
    finally:
        for engine in others:
            await engine.dispose()
    assert sorted(r.created_messages_table for r in reports) == [False, False, False, True]
    assert {r.revision_after for r in reports} == {HEAD}


@pytest.mark.postgres
async def test_downgrade_of_a_created_schema_drops_it(pg: AsyncEngine) -> None:
    """Downgrading a schema this migration created drops both tables."""
    await migrate(pg)
    async with pg.connect() as connection:
        await connection.run_sync(migrate_to, "base", down=True)
        await connection.commit()
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables == {"alembic_version"}


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a new SQLite file (not migrated)."""
    engine = create_engine(URL.create("sqlite+aiosqlite", database=str(tmp_path / "new.db")), pool_size=2)
    yield engine
    await engine.dispose()


async def test_new_sqlite_file_migrates_and_takes_a_plain_sql_insert(sqlite: AsyncEngine) -> None:
    """A new SQLite file migrates to head and a plain-SQL insert gets every default."""
    report = await migrate(sqlite)
    assert (report.created_messages_table, report.revision_after) == (True, HEAD)
    [row] = await fetch(sqlite, PLAIN_INSERT.replace("RETURNING id", "RETURNING *"))
    assert (row["status"], row["attempts"], row["deleted_at"]) == ("PENDING", 0, None)
    message = await SqlMessageStore(sqlite).get(UUID(row["id"]))
    assert message is not None
    assert message.created_at.tzinfo is UTC
    assert abs(message.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_sqlite_default_id_is_a_dashed_lowercase_uuid4(sqlite: AsyncEngine) -> None:
    """SQLite's default id is a random version-4 UUID as 36 lowercase characters."""
    await migrate(sqlite)
    ids = [(await fetch(sqlite, PLAIN_INSERT))[0]["id"] for _ in range(50)]
    pattern = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(pattern.fullmatch(id_) for id_ in ids)
    assert len(set(ids)) == len(ids)


async def test_new_sqlite_schema_matches_tables_module(sqlite: AsyncEngine) -> None:
    """The migrated SQLite schema is the one tables.py describes."""
    await migrate(sqlite)
    async with sqlite.connect() as connection:
        assert await connection.run_sync(schema_differences) == []


async def test_sqlite_migrate_twice_changes_nothing(sqlite: AsyncEngine) -> None:
    """A second migrate on SQLite reports the schema already there."""
    await migrate(sqlite)
    second = await migrate(sqlite)
    assert (second.revision_before, second.created_messages_table) == (HEAD, False)


async def test_sqlite_refuses_to_adopt_a_foreign_table(sqlite: AsyncEngine) -> None:
    """An unversioned messages table on SQLite is refused, not altered (adoption is PostgreSQL only)."""
    async with sqlite.begin() as connection:
        await connection.execute(text('CREATE TABLE messages (id TEXT PRIMARY KEY, "to" TEXT, content TEXT)'))
    with pytest.raises(RuntimeError, match="PostgreSQL only"):
        await migrate(sqlite)
    assert await fetch(sqlite, "SELECT name FROM sqlite_master WHERE type = 'table'") == [
        {"name": "messages"}
    ]
