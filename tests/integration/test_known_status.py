"""Migration 0008: rows with a status the service does not know are adopted, and new writes of
one are refused with an error that names the rule, on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status
from tests.schema_helpers import migrate_to


@pytest.fixture
async def engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    """An engine on a database migrated up to 0007 (before the rule)."""
    created = create_engine(database_url, pool_size=2)

    async with created.begin() as connection:
        await connection.run_sync(migrate_to, "0007")
    yield created
    await created.dispose()


async def insert(engine: AsyncEngine, to: str, status: str) -> None:
    """Insert a row by hand, as another program would."""
    async with engine.begin() as connection:
        await connection.execute(
            text("""INSERT INTO messages ("to", content, status) VALUES (:to, 'hi', :status)"""),
            {"to": to, "status": status},
        )


async def rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Every row by recipient."""
    async with engine.connect() as connection:
        result = await connection.execute(text('SELECT "to", status, last_error FROM messages'))
        return {row.to: dict(row._mapping) for row in result}


async def test_existing_rows_are_adopted_and_nothing_is_lost(engine: AsyncEngine) -> None:
    """A known status in another case is read as that status; an unknown one becomes FAILED
    with the old status in last_error; every row is still there and the listings read them."""
    for to, status in (
        ("+905551", "pending"),
        ("+905552", " Success "),
        ("+905553", "sent"),
        ("+905554", "FAILED"),
    ):
        await insert(engine, to, status)
    await migrate(engine)
    after = await rows(engine)
    assert {to: row["status"] for to, row in after.items()} == {
        "+905551": "PENDING",
        "+905552": "SUCCESS",
        "+905553": "FAILED",
        "+905554": "FAILED",
    }
    assert after["+905553"]["last_error"].startswith('unknown status "sent"')
    assert after["+905554"]["last_error"] is None
    page = await SqlMessageStore(engine).list_messages(limit=10)
    assert sorted(m.status for m in page.items) == [
        Status.FAILED,
        Status.FAILED,
        Status.PENDING,
        Status.SUCCESS,
    ]


@pytest.mark.parametrize("status", ["pending", "sent", ""])
async def test_a_hand_write_of_an_unknown_status_is_refused(engine: AsyncEngine, status: str) -> None:
    """After the migration an INSERT or UPDATE with another status fails, naming the rule."""
    await migrate(engine)
    with pytest.raises(DBAPIError) as refused:
        await insert(engine, "+905559", status)
    assert "ck_messages_status_known" in str(refused.value) or "must be one of PENDING" in str(refused.value)
    await insert(engine, "+905558", "PENDING")
    with pytest.raises(DBAPIError):
        async with engine.begin() as connection:
            await connection.execute(text("""UPDATE messages SET status = 'done' WHERE "to" = '+905558'"""))
    assert (await rows(engine))["+905558"]["status"] == "PENDING"
