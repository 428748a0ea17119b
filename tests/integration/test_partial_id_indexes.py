"""Migration 0009: the provider-id and idempotency-key indexes hold only rows with a value, keys
stay unique, lookups still use them, and the downgrade indexes every row again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import URL, make_url, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import NewMessage
from tests.schema_helpers import index_definitions, migrate_to

INDEXES = ("ux_messages_idempotency_key", "ix_messages_message_id")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
async def at_0008(database_url: URL) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated up to 0008 (both indexes over every row)."""
    created = create_engine(database_url, pool_size=2)
    async with created.begin() as connection:
        await connection.run_sync(migrate_to, "0008")
    yield created
    await created.dispose()


async def definitions(engine: AsyncEngine) -> dict[str, str]:
    """The SQL that defines each of the two indexes, as the database writes it out."""
    async with engine.connect() as connection:
        found = await index_definitions(connection, "public")
    return {name: sql for name, sql in found.items() if name in INDEXES}


async def hand_insert(engine: AsyncEngine, to: str, key: str | None, message_id: str | None) -> None:
    """Insert a row by hand, as another program would."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                'INSERT INTO messages ("to", content, idempotency_key, message_id)'
                " VALUES (:to, 'hi', :key, :message_id)"
            ),
            {"to": to, "key": key, "message_id": message_id},
        )


async def test_upgrade_makes_both_indexes_partial_and_keys_stay_unique(at_0008: AsyncEngine) -> None:
    """Rows already there survive; a key already used finds its message through the partial
    index (the insert names its predicate, or the database refuses the ON CONFLICT), a new key
    creates one, and a duplicate key inserted by hand is refused."""
    before = await definitions(at_0008)
    assert set(before) == set(INDEXES)
    assert not any("NOT NULL" in sql.upper() for sql in before.values())
    await hand_insert(at_0008, "+905551", "key-a", None)
    await hand_insert(at_0008, "+905552", None, "provider-1")
    await hand_insert(at_0008, "+905553", None, None)

    await migrate(at_0008)

    after = await definitions(at_0008)
    assert set(after) == set(INDEXES)
    assert all("IS NOT NULL" in sql.upper() for sql in after.values()), after
    store = SqlMessageStore(at_0008)
    again, created = await store.create_idempotent(NewMessage("+905559", "other"), now=NOW, key="key-a")
    assert (again.to, created) == ("+905551", False)
    fresh, created = await store.create_idempotent(NewMessage("+905554", "new"), now=NOW, key="key-b")
    assert (fresh.to, fresh.idempotency_key, created) == ("+905554", "key-b", True)
    await hand_insert(at_0008, "+905555", None, None)
    with pytest.raises(IntegrityError):
        await hand_insert(at_0008, "+905556", "key-b", None)
    async with at_0008.connect() as connection:
        total = (await connection.execute(text("SELECT count(*) FROM messages"))).scalar_one()
    assert total == 5


async def test_downgrade_indexes_every_row_again(at_0008: AsyncEngine) -> None:
    """Back at 0008 both indexes cover every row, with the key still unique."""
    await migrate(at_0008)
    async with at_0008.begin() as connection:
        await connection.run_sync(migrate_to, "0008", down=True)
    back = await definitions(at_0008)
    assert set(back) == set(INDEXES)
    assert not any("NOT NULL" in sql.upper() for sql in back.values()), back
    await hand_insert(at_0008, "+905551", "key-a", None)
    with pytest.raises(IntegrityError):
        await hand_insert(at_0008, "+905552", "key-a", None)


@pytest.mark.postgres
async def test_postgres_still_finds_a_message_by_provider_id_through_the_index(pg_url: str) -> None:
    """``message_id = $1`` is served by the partial index in the generic plan asyncpg's prepared
    statements end up with (sequential scans disabled to ask)."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+asyncpg"), pool_size=1)
    try:
        await migrate(engine)
        await hand_insert(engine, "+905551", None, "provider-1")
        async with engine.connect() as connection:
            await connection.execute(text("SET enable_seqscan = off"))
            await connection.execute(text("SET plan_cache_mode = force_generic_plan"))
            await connection.execute(
                text("PREPARE by_provider(varchar) AS SELECT id FROM messages WHERE message_id = $1")
            )
            explained = await connection.execute(text("EXPLAIN EXECUTE by_provider('provider-1')"))
            plan = "\n".join(row[0] for row in explained)
        assert "ix_messages_message_id" in plan, plan
    finally:
        await engine.dispose()
