"""Deep pages of the sent listing on PostgreSQL: the per-hour counts of migration 0007, and pages
read through them equal to plain ``OFFSET`` pages, whatever writes happen meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sms_dispatch.adapters import sql_listing
from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_listing_statements import SENT_BY_HOURS, Way, sent_statement
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status, Transition
from sms_dispatch.ports import Page
from tests.contract.store_helpers import async_pg_url
from tests.schema_helpers import migrate_to

pytestmark = pytest.mark.postgres

START = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)

# What the kept counts say (deltas included) and what a recount of the rows says.
KEPT = """SELECT hour, sum(n) FROM (SELECT hour, total AS n FROM sent_hour_counts
          UNION ALL SELECT hour, delta FROM sent_hour_deltas) AS kept
          GROUP BY hour HAVING sum(n) <> 0 ORDER BY hour"""
RECOUNT = """SELECT coalesce(date_bin('1 hour', sent_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), 'infinity'),
             count(*) FROM messages WHERE status = 'SUCCESS' AND deleted_at IS NULL GROUP BY 1 ORDER BY 1"""
# SUCCESS rows every 7 minutes, three at each time (ties broken by id), from START on.
INSERT_SENT = """INSERT INTO messages ("to", content, status, sent_at)
    SELECT '+905551004242', 'x', 'SUCCESS', CAST(:start AS timestamptz) + (g / 3) * interval '7 minutes'
    FROM generate_series(0, :n - 1) AS g"""
INSERT_UNDATED = """INSERT INTO messages ("to", content, status) SELECT '+905551111111', 'no sent_at', 'SUCCESS'
    FROM generate_series(1, :n)"""
INSERT_FAILED = """INSERT INTO messages ("to", content, status) SELECT '+905552222222', 'dead', 'FAILED'
    FROM generate_series(1, :n)"""


@pytest.fixture
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on a fresh PostgreSQL database."""
    created = create_engine(async_pg_url(pg_url), pool_size=4)
    await migrate(created)
    yield created
    await created.dispose()


@pytest.fixture
def every_page_by_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reach every page after the first through the hour counts, however shallow."""
    monkeypatch.setattr(sql_listing, "DEEP_FROM_ROWS", 1)


async def run(engine: AsyncEngine, statement: str, **values: Any) -> None:
    """Run one statement in its own transaction."""
    async with engine.begin() as connection:
        await connection.execute(text(statement), values)


async def assert_hours_exact(engine: AsyncEngine) -> None:
    """The kept hour counts equal a recount of the live SUCCESS rows."""
    async with engine.connect() as connection:
        kept = (await connection.execute(text(KEPT))).all()
        recounted = (await connection.execute(text(RECOUNT))).all()
    assert [tuple(row) for row in kept] == [tuple(row) for row in recounted]


async def fold(engine: AsyncEngine) -> None:
    """Fold every delta into the counts now."""
    await run(engine, "SELECT message_counts_fold()")


async def test_hour_counts_follow_every_write(engine: AsyncEngine) -> None:
    """Inserts, finishes, hand edits, soft deletes, deletes and a prune keep the hours exact."""
    store = SqlMessageStore(engine)
    await run(engine, INSERT_SENT, start=START, n=60)
    await run(engine, INSERT_UNDATED, n=2)
    await run(engine, INSERT_FAILED, n=3)
    await assert_hours_exact(engine)
    await run(
        engine,
        """INSERT INTO messages ("to", content, next_attempt_at) VALUES ('+905551004242', 'p', :at)""",
        at=START,
    )
    claimed = await store.claim_due(
        limit=5, now=START + timedelta(days=1), lease_s=60, claim_token="t", claimed_by="test"
    )
    await store.finish(
        [Transition(m.id, "t", Status.SUCCESS, "p-1", sent_at=START + timedelta(hours=5)) for m in claimed],
        now=START + timedelta(hours=5),
    )
    await assert_hours_exact(engine)
    changes = (
        "UPDATE messages SET sent_at = sent_at + interval '3 hours' WHERE content = 'x' AND sent_at < :cut",
        "UPDATE messages SET deleted_at = now() WHERE content = 'x' AND sent_at < CAST(:cut AS timestamptz) + interval '4 hours'",
        "UPDATE messages SET deleted_at = NULL WHERE deleted_at IS NOT NULL",
        "UPDATE messages SET status = 'FAILED' WHERE status = 'SUCCESS' AND sent_at IS NULL",
        "DELETE FROM messages WHERE content = 'x' AND sent_at > CAST(:cut AS timestamptz) + interval '5 hours'",
    )
    for change in changes:
        await run(engine, change, **({"cut": START + timedelta(hours=1)} if ":cut" in change else {}))
        await assert_hours_exact(engine)
    await fold(engine)
    await assert_hours_exact(engine)
    pruned = await store.prune_sent(before=START + timedelta(hours=4), limit=1000)
    assert pruned > 0
    await fold(engine)
    await assert_hours_exact(engine)
    async with engine.connect() as connection:
        oldest = (await connection.execute(text("SELECT min(hour) FROM sent_hour_counts"))).scalar_one()
        empty = (
            await connection.execute(text("SELECT count(*) FROM sent_hour_counts WHERE total = 0"))
        ).scalar()
    assert oldest >= START.replace(minute=0) + timedelta(hours=4), "a pruned hour was kept"
    assert empty == 0


async def test_many_statements_fold_the_hour_deltas(engine: AsyncEngine) -> None:
    """Single-row writes fold their hour deltas about every 256, and the hours stay exact."""
    for n in range(300):
        await run(engine, INSERT_SENT, start=START + timedelta(minutes=n), n=1)
    async with engine.connect() as connection:
        waiting = (await connection.execute(text("SELECT count(*) FROM sent_hour_deltas"))).scalar_one()
    assert waiting < 256
    await assert_hours_exact(engine)


async def test_truncate_resets_the_hour_counts(engine: AsyncEngine) -> None:
    """TRUNCATE messages empties the hour counts; new rows count from there."""
    await run(engine, INSERT_SENT, start=START, n=10)
    await fold(engine)
    await run(engine, "TRUNCATE messages CASCADE")
    await run(engine, INSERT_SENT, start=START, n=4)
    await assert_hours_exact(engine)


def summary(page: Page) -> tuple[list[Any], int | None, Any]:
    """What a page answers: its ids in order, the total, where the next page starts."""
    return [m.id for m in page.items], page.total, page.next_after


@pytest.mark.usefixtures("every_page_by_hours")
async def test_pages_through_the_hours_equal_offset_pages(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page, of several sizes, past the end too, equals the plain OFFSET page (rows without
    sent_at first, ties broken by id, deltas folded or not)."""
    await run(engine, INSERT_SENT, start=START, n=150)
    await run(engine, INSERT_UNDATED, n=4)
    await run(engine, INSERT_FAILED, n=5)
    await run(
        engine, "DELETE FROM messages WHERE content = 'x' AND sent_at < :cut", cut=START + timedelta(hours=1)
    )
    store = SqlMessageStore(engine)
    for folded in (False, True):
        if folded:
            await fold(engine)
        for limit in (1, 4, 7, 20):
            for page in range(1, 127 // limit + 3):
                by_hours = summary(await store.list_sent(limit=limit, page=page))
                with monkeypatch.context() as plain:
                    plain.setattr(sql_listing, "DEEP_FROM_ROWS", 10**9)
                    by_offset = summary(await store.list_sent(limit=limit, page=page))
                assert by_hours == by_offset, (folded, limit, page)
    last = await store.list_sent(limit=7, page=1000)
    assert (last.items, last.total, last.next_after) == ([], 127, None)  # 150 - 27 deleted + 4


async def read_both(connection: AsyncConnection, skip: int) -> tuple[list[Any], list[Any]]:
    """The page at ``skip`` through the hours and by OFFSET, in one snapshot."""
    values = {"skip": skip, "rows": 8}
    offset = sent_statement(Way.OFFSET, to=False, since=False, until=False, postgres=True)
    by_hours = [(row.id, row.total) for row in await connection.execute(SENT_BY_HOURS, values)]
    by_offset = [(row.id, row.total) for row in await connection.execute(offset, values)]
    return by_hours, by_offset


async def test_pages_through_the_hours_stay_exact_while_rows_are_written(engine: AsyncEngine) -> None:
    """Writers insert, finish and delete while deep pages are read: in any snapshot the page
    through the hours (unfolded deltas included) is the OFFSET page, total included."""
    await run(engine, INSERT_SENT, start=START, n=300)
    stop = asyncio.Event()

    async def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await run(engine, INSERT_SENT, start=START + timedelta(minutes=13 * (n % 40)), n=1 + n % 3)
            if n % 4 == 0:
                await run(
                    engine, "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT 1)"
                )
            if n % 5 == 0:
                await run(
                    engine,
                    "UPDATE messages SET sent_at = NULL WHERE id = (SELECT id FROM messages ORDER BY id DESC LIMIT 1)",
                )

    writer = asyncio.create_task(write())
    try:
        compared = 0
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="REPEATABLE READ")
            for round_ in range(40):
                async with connection.begin():
                    for skip in (0, 5, 47 + round_, 150, 290):
                        by_hours, by_offset = await read_both(connection, skip)
                        assert by_hours == by_offset, skip
                        compared += len(by_offset)
                await asyncio.sleep(0)
    finally:
        stop.set()
        await writer
    assert compared > 0
    await assert_hours_exact(engine)


async def test_migration_counts_the_sent_rows_already_there(pg_url: str) -> None:
    """Upgrading a database with sent rows to 0007 backfills their hours."""
    created = create_engine(async_pg_url(pg_url), pool_size=2)
    try:
        async with created.connect() as connection:
            await connection.run_sync(migrate_to, "0006")
            await connection.commit()
        await run(created, INSERT_SENT, start=START, n=40)
        await run(created, INSERT_UNDATED, n=2)
        await migrate(created)
        await assert_hours_exact(created)
    finally:
        await created.dispose()
