"""The listing contract: keyset and offset pages, filters, and counts the database keeps exact.

Runs against every store (in-memory, SQLite, PostgreSQL) with the fixtures of the store
contract suite. What only SQL databases have (rows written by other programs with plain SQL,
the counting triggers and their folding, several writers at once) runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from uuid import UUID

import pytest
from alembic import command
from sqlalchemy import URL, Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import alembic_config, create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Message, Status, Transition
from sms_dispatch.ports import MessageFilter, Page, Position
from tests.conftest import FakeClock
from tests.contract.store_helpers import (
    LEASE_S,
    Store,
    Subject,
    add,
    async_pg_url,
    claim,
    migrated_engine,
    sent,
    stored,
)

ALL_ZERO = dict.fromkeys(Status, 0)


def ids(messages: list[Message]) -> list[UUID]:
    """Return the ids of ``messages`` in order."""
    return [m.id for m in messages]


def newest_sent_first(messages: list[Message]) -> list[UUID]:
    """Return the ids of sent messages, newest ``sent_at`` first (then the larger id)."""
    return [m.id for m in sorted(messages, key=lambda m: (m.sent_at, m.id), reverse=True)]


def newest_created_first(messages: list[Message]) -> list[UUID]:
    """Return the ids of messages, newest ``created_at`` first (then the larger id)."""
    return [m.id for m in sorted(messages, key=lambda m: (m.created_at, m.id), reverse=True)]


async def walk_sent(store: Store, *, limit: int, where: MessageFilter | None = None) -> list[UUID]:
    """Return the ids of the whole sent listing, read page after page by keyset."""
    walked: list[UUID] = []
    page = await store.list_sent(limit=limit, where=where)
    walked.extend(ids(page.items))
    while page.next_after is not None:
        page = await store.list_sent(limit=limit, after=page.next_after, where=where)
        walked.extend(ids(page.items))
    return walked


async def walk_messages(store: Store, *, limit: int, where: MessageFilter | None = None) -> list[UUID]:
    """Return the ids of the whole message listing, read page after page by keyset."""
    walked: list[UUID] = []
    page = await store.list_messages(limit=limit, where=where)
    walked.extend(ids(page.items))
    while page.next_after is not None:
        page = await store.list_messages(limit=limit, after=page.next_after, where=where)
        walked.extend(ids(page.items))
    return walked


def counts(**by_status: int) -> Mapping[Status, int]:
    """Return every status's count: the given ones, zero for the rest."""
    return ALL_ZERO | {Status(name): n for name, n in by_status.items()}


async def fail(store: Store, clock: FakeClock, count: int) -> list[Message]:
    """Create, claim and fail ``count`` messages (dead letters); return them as stored."""
    created = await add(store, clock, count)
    claimed = await claim(store, clock, limit=count)
    failures = [Transition(m.id, "token-a", Status.FAILED, last_error="403") for m in claimed]
    await store.finish(failures, now=clock.now())
    return [await stored(store, m.id) for m in created]


async def sql(engine: AsyncEngine, statement: str) -> None:
    """Run one plain-SQL statement in its own transaction, as another program would."""
    async with engine.begin() as connection:
        await connection.execute(text(statement))


async def recount(engine: AsyncEngine) -> Mapping[Status, int]:
    """Return the counts by status the slow way: counting the live rows of ``messages``."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT status, count(*) FROM messages WHERE deleted_at IS NULL GROUP BY status")
        )
        return ALL_ZERO | {Status(status): n for status, n in rows}


async def delta_rows(engine: AsyncEngine) -> int:
    """Return how many count deltas wait to be folded in."""
    async with engine.connect() as connection:
        found: int = await connection.scalar(text("SELECT count(*) FROM message_count_deltas"))
    return found


HAND_INSERT = """INSERT INTO messages ("to", content) VALUES ('+905551111111', 'by hand')"""
SOFT_DELETE_ONE_SUCCESS = (
    "UPDATE messages SET deleted_at = created_at WHERE id ="
    " (SELECT id FROM messages WHERE status = 'SUCCESS' AND deleted_at IS NULL LIMIT 1)"
)
DELETE_ONE_SUCCESS = (
    "DELETE FROM messages WHERE id ="
    " (SELECT id FROM messages WHERE status = 'SUCCESS' AND deleted_at IS NULL LIMIT 1)"
)
SEND_ONE_PENDING = (
    "UPDATE messages SET status = 'SUCCESS' WHERE id ="
    " (SELECT id FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL LIMIT 1)"
)
SOFT_DELETE_ONE_PENDING = (
    "UPDATE messages SET deleted_at = created_at WHERE id ="
    " (SELECT id FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL LIMIT 1)"
)


# The sent listing: SUCCESS messages, newest sent_at first.


async def test_sent_keyset_walk_covers_every_row_once(subject: Subject, clock: FakeClock) -> None:
    """Following next_after from the first page lists every sent message once, newest first."""
    delivered = await sent(subject.store, clock, 7)
    assert await walk_sent(subject.store, limit=3) == newest_sent_first(delivered)


async def test_sent_last_full_page_has_no_next(subject: Subject, clock: FakeClock) -> None:
    """A page that ends exactly at the last row has no next_after (no empty page follows)."""
    await sent(subject.store, clock, 4)
    first = await subject.store.list_sent(limit=2)
    assert first.next_after is not None
    last = await subject.store.list_sent(limit=2, after=first.next_after)
    assert (len(last.items), last.next_after) == (2, None)


async def test_sent_cursor_is_stable_while_messages_are_sent(subject: Subject, clock: FakeClock) -> None:
    """Messages sent between two pages neither shift nor repeat the rows after the cursor."""
    delivered = await sent(subject.store, clock, 6)
    first = await subject.store.list_sent(limit=2)
    await sent(subject.store, clock, 3)
    assert first.next_after is not None
    rest = await subject.store.list_sent(limit=10, after=first.next_after)
    assert ids(rest.items) == newest_sent_first(delivered)[2:]


async def test_sent_offset_page_matches_the_keyset_page(subject: Subject, clock: FakeClock) -> None:
    """Page 2 by page/limit holds the same rows as the page after page 1's next_after."""
    await sent(subject.store, clock, 5)
    first = await subject.store.list_sent(limit=2)
    assert first.next_after is not None
    by_cursor = await subject.store.list_sent(limit=2, after=first.next_after)
    by_page = await subject.store.list_sent(limit=2, page=2)
    assert (by_page.items, by_page.next_after) == (by_cursor.items, by_cursor.next_after)


async def test_sent_with_a_cursor_ignores_page_and_keeps_the_total(
    subject: Subject, clock: FakeClock
) -> None:
    """With ``after`` the page number is ignored and the exact total still comes back."""
    await sent(subject.store, clock, 3)
    first = await subject.store.list_sent(limit=1)
    assert first.next_after is not None
    second = await subject.store.list_sent(limit=1, page=50, after=first.next_after)
    assert (len(second.items), second.total) == (1, 3)


async def test_sent_filter_by_recipient_has_no_total(subject: Subject, clock: FakeClock) -> None:
    """``to`` lists only that recipient's sent messages, and total is None."""
    delivered = await sent(subject.store, clock, 3)
    page = await subject.store.list_sent(limit=10, where=MessageFilter(to=delivered[1].to))
    assert (ids(page.items), page.total) == ([delivered[1].id], None)


async def test_sent_filter_by_window_bounds_sent_at(subject: Subject, clock: FakeClock) -> None:
    """``since`` (inclusive) and ``until`` (exclusive) bound sent_at, not created_at."""
    delivered = await sent(subject.store, clock, 4)
    window = MessageFilter(since=delivered[1].sent_at, until=delivered[3].sent_at)
    assert await walk_sent(subject.store, limit=1, where=window) == [delivered[2].id, delivered[1].id]


async def test_sent_filtered_offset_pages(subject: Subject, clock: FakeClock) -> None:
    """page/limit pages a filtered listing too, in the same order."""
    delivered = await sent(subject.store, clock, 5)
    window = MessageFilter(since=delivered[0].sent_at)
    pages = [await subject.store.list_sent(limit=2, page=n, where=window) for n in (1, 2, 3)]
    assert [m.id for p in pages for m in p.items] == newest_sent_first(delivered)


async def test_sent_rows_without_sent_at_are_walked_once(subject: Subject, clock: FakeClock) -> None:
    """SUCCESS rows without sent_at (written by hand) are listed once, wherever the database puts them."""
    created = await add(subject.store, clock, 5)
    claimed = await claim(subject.store, clock)
    finished = [
        Transition(m.id, "token-a", Status.SUCCESS, f"p-{n}", sent_at=None if n % 2 else clock.now())
        for n, m in enumerate(claimed)
    ]
    await subject.store.finish(finished, now=clock.now())
    walked = await walk_sent(subject.store, limit=1)
    assert sorted(walked) == sorted(ids(created))


async def test_sent_listing_refuses_another_status(subject: Subject) -> None:
    """The sent listing is SUCCESS only: a filter naming another status is a ValueError."""
    with pytest.raises(ValueError, match="SUCCESS"):
        await subject.store.list_sent(limit=1, where=MessageFilter(status=Status.FAILED))


# The message listing: every live message, newest created_at first.


async def test_messages_lists_every_status_newest_first(subject: Subject, clock: FakeClock) -> None:
    """Without a filter every live message is listed, newest created_at first, with the total."""
    delivered = await sent(subject.store, clock, 2)
    failed = await fail(subject.store, clock, 2)
    pending = await add(subject.store, clock, 2)
    await subject.soft_delete(pending[0].id, clock.now())
    live = [*delivered, *failed, pending[1]]
    page = await subject.store.list_messages(limit=10)
    assert (ids(page.items), page.total, page.next_after) == (newest_created_first(live), 5, None)


async def test_messages_status_filter_lists_the_dead_letters(subject: Subject, clock: FakeClock) -> None:
    """status=FAILED lists only the dead letters, with their exact total."""
    await sent(subject.store, clock, 2)
    failed = await fail(subject.store, clock, 3)
    await add(subject.store, clock, 1)
    page = await subject.store.list_messages(limit=10, where=MessageFilter(status=Status.FAILED))
    assert (ids(page.items), page.total) == (newest_created_first(failed), 3)


async def test_messages_recipient_and_window_filter_created_at(subject: Subject, clock: FakeClock) -> None:
    """``to`` with ``since``/``until`` on created_at lists that slice only, with no total."""
    created = await add(subject.store, clock, 6)
    window = MessageFilter(to=created[4].to, since=created[0].created_at, until=created[5].created_at)
    page = await subject.store.list_messages(limit=10, where=window)
    assert (ids(page.items), page.total) == ([created[4].id], None)
    everyone = MessageFilter(since=created[1].created_at, until=created[4].created_at)
    assert await walk_messages(subject.store, limit=2, where=everyone) == newest_created_first(created[1:4])


async def test_messages_keyset_walk_is_stable_while_rows_arrive(subject: Subject, clock: FakeClock) -> None:
    """Rows created between pages don't shift the walk: each older row comes exactly once."""
    failed = await fail(subject.store, clock, 5)
    dead = MessageFilter(status=Status.FAILED)
    first = await subject.store.list_messages(limit=2, where=dead)
    await fail(subject.store, clock, 2)
    assert first.next_after is not None
    rest = await subject.store.list_messages(limit=2, after=first.next_after, where=dead)
    walked = ids(first.items) + ids(rest.items)
    while rest.next_after is not None:
        rest = await subject.store.list_messages(limit=2, after=rest.next_after, where=dead)
        walked.extend(ids(rest.items))
    assert walked == newest_created_first(failed)


async def test_messages_position_needs_a_time(subject: Subject, clock: FakeClock) -> None:
    """A position without created_at is a ValueError in the listing by created_at."""
    [message] = await add(subject.store, clock, 1)
    with pytest.raises(ValueError, match="created_at"):
        await subject.store.list_messages(limit=1, after=Position(None, message.id))


# Counts: exact after every kind of change.


async def test_counts_follow_create_claim_and_finish(subject: Subject, clock: FakeClock) -> None:
    """Creating, claiming and finishing moves each message between the counts."""
    await add(subject.store, clock, 4)
    assert await subject.store.count_by_status() == counts(PENDING=4)
    claimed = await claim(subject.store, clock, limit=3)
    assert await subject.store.count_by_status() == counts(PENDING=1, SENDING=3)
    outcomes = [Status.SUCCESS, Status.FAILED, Status.PENDING]
    await subject.store.finish(
        [Transition(m.id, "token-a", s, sent_at=clock.now()) for m, s in zip(claimed, outcomes, strict=True)],
        now=clock.now(),
    )
    assert await subject.store.count_by_status() == counts(PENDING=2, SUCCESS=1, FAILED=1)


async def test_counts_follow_rescue(subject: Subject, clock: FakeClock) -> None:
    """Rescued leases move from SENDING to PENDING, or to FAILED when out of attempts."""
    await add(subject.store, clock, 2)
    await claim(subject.store, clock)
    clock.advance(LEASE_S + 1)
    await subject.store.rescue_expired(now=clock.now(), max_attempts=1, retry_delay_s=1)
    assert await subject.store.count_by_status() == counts(FAILED=2)


async def test_counts_follow_retry_and_cancel(subject: Subject, clock: FakeClock) -> None:
    """An operator's retry and cancel move messages between the counts."""
    [dead] = await fail(subject.store, clock, 1)
    [waiting] = await add(subject.store, clock, 1)
    await subject.store.retry(dead.id, now=clock.now())
    await subject.store.cancel(waiting.id, now=clock.now())
    assert await subject.store.count_by_status() == counts(PENDING=1, CANCELLED=1)


async def test_counts_leave_out_soft_deleted_and_pruned_rows(subject: Subject, clock: FakeClock) -> None:
    """A soft-deleted message and a pruned one leave the counts and the totals."""
    first, _, _ = await sent(subject.store, clock, 3)
    await subject.soft_delete(first.id, clock.now())
    clock.advance(1)
    assert await subject.store.prune_sent(before=clock.now(), limit=1) == 1
    assert await subject.store.count_by_status() == counts(SUCCESS=1)
    assert (await subject.store.list_sent(limit=10)).total == 1


async def test_counts_include_rows_written_with_plain_sql(sql_engine: AsyncEngine) -> None:
    """Rows inserted, updated, soft-deleted and deleted by hand are counted like the store's own."""
    store = SqlMessageStore(sql_engine)
    for _ in range(3):
        await sql(sql_engine, HAND_INSERT)
    await sql(sql_engine, "UPDATE messages SET status = 'SUCCESS', sent_at = created_at")
    await sql(sql_engine, HAND_INSERT)
    await sql(sql_engine, SOFT_DELETE_ONE_SUCCESS)
    await sql(sql_engine, DELETE_ONE_SUCCESS)
    assert await store.count_by_status() == counts(PENDING=1, SUCCESS=1) == await recount(sql_engine)
    assert (await store.list_sent(limit=10)).total == 1


async def test_counts_follow_an_undeleted_row(sql_engine: AsyncEngine) -> None:
    """Clearing deleted_at by hand brings a soft-deleted row back into the counts."""
    await sql(sql_engine, HAND_INSERT)
    await sql(sql_engine, "UPDATE messages SET deleted_at = created_at")
    await sql(sql_engine, "UPDATE messages SET deleted_at = NULL, status = 'FAILED'")
    assert await SqlMessageStore(sql_engine).count_by_status() == counts(FAILED=1)


async def test_counts_include_a_bulk_insert(sql_engine: AsyncEngine) -> None:
    """A 1,000-row INSERT ... SELECT by another program is counted in full."""
    await sql(
        sql_engine,
        """INSERT INTO messages ("to", content, status) SELECT '+905551111111', 'bulk',"""
        " CASE WHEN n % 4 = 0 THEN 'FAILED' ELSE 'SUCCESS' END"
        " FROM (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000)"
        " SELECT n FROM s) AS numbers",
    )
    assert await SqlMessageStore(sql_engine).count_by_status() == counts(SUCCESS=750, FAILED=250)


async def test_migration_counts_the_rows_already_there(sql_database_url: URL) -> None:
    """Upgrading a database that holds messages starts the counts from its live rows."""
    engine = create_engine(sql_database_url, pool_size=2)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade_to, "0002")
            await connection.commit()
        for statement in (HAND_INSERT, HAND_INSERT, HAND_INSERT):
            await sql(engine, statement)
        await sql(engine, SEND_ONE_PENDING)
        await sql(engine, SOFT_DELETE_ONE_PENDING)
        await migrate(engine)
        assert await SqlMessageStore(engine).count_by_status() == counts(PENDING=1, SUCCESS=1)
    finally:
        await engine.dispose()


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


# PostgreSQL: deltas, folding, TRUNCATE, several writers at once.


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on a fresh PostgreSQL database."""
    engine = await migrated_engine(async_pg_url(pg_url))
    yield engine
    await engine.dispose()


@pytest.mark.postgres
async def test_deltas_are_folded_into_the_counts(pg_engine: AsyncEngine) -> None:
    """After 300 single-row inserts fewer than 256 deltas wait, and the counts are exact."""
    for _ in range(300):
        await sql(pg_engine, HAND_INSERT)
    assert await delta_rows(pg_engine) < 256
    assert await SqlMessageStore(pg_engine).count_by_status() == counts(PENDING=300)


@pytest.mark.postgres
async def test_fold_is_skipped_in_a_repeatable_read_transaction(pg_engine: AsyncEngine) -> None:
    """A REPEATABLE READ writer that reaches the fold mark commits without folding (nor failing)."""
    await sql(pg_engine, f"SELECT setval({_DELTA_SEQUENCE}, 255)")
    repeatable = await pg_engine.connect()
    try:
        await repeatable.execution_options(isolation_level="REPEATABLE READ")
        async with repeatable.begin():
            await repeatable.execute(text(HAND_INSERT))
    finally:
        await repeatable.close()
    assert await delta_rows(pg_engine) == 1
    await sql(pg_engine, f"SELECT setval({_DELTA_SEQUENCE}, 511)")
    await sql(pg_engine, HAND_INSERT)
    assert await delta_rows(pg_engine) == 0
    assert await SqlMessageStore(pg_engine).count_by_status() == counts(PENDING=2)


_DELTA_SEQUENCE = "pg_get_serial_sequence('message_count_deltas', 'id')"


@pytest.mark.postgres
async def test_truncate_resets_the_counts(pg_engine: AsyncEngine) -> None:
    """TRUNCATE messages leaves every count at zero, and new rows count from there."""
    for _ in range(3):
        await sql(pg_engine, HAND_INSERT)
    await sql(pg_engine, "TRUNCATE messages CASCADE")
    await sql(pg_engine, HAND_INSERT)
    assert await SqlMessageStore(pg_engine).count_by_status() == counts(PENDING=1)


@pytest.mark.postgres
async def test_concurrent_writers_keep_the_counts_exact(pg_engine: AsyncEngine, clock: FakeClock) -> None:
    """Four instances creating, claiming and finishing at once leave counts equal to a recount."""
    others = [create_engine(pg_engine.url, pool_size=2) for _ in range(3)]

    async def work(engine: AsyncEngine, token: str) -> None:
        store = SqlMessageStore(engine)
        for round_ in range(15):
            await add(store, clock, 6, gap_s=0)
            batch = await store.claim_due(
                limit=5,
                now=clock.now() + timedelta(seconds=1),
                lease_s=30,
                claim_token=token,
                claimed_by=token,
            )
            outcome = Status.SUCCESS if round_ % 3 else Status.FAILED
            done = [Transition(m.id, token, outcome, sent_at=clock.now()) for m in batch[:4]]
            await store.finish(done, now=clock.now())

    try:
        await asyncio.gather(*(work(engine, f"t{n}") for n, engine in enumerate([pg_engine, *others])))
    finally:
        for engine in others:
            await engine.dispose()
    found = await SqlMessageStore(pg_engine).count_by_status()
    assert found == await recount(pg_engine)
    assert sum(found.values()) == 4 * 15 * 6


async def test_listing_pages_hold_at_most_limit_rows(subject: Subject, clock: FakeClock) -> None:
    """Every listing returns at most ``limit`` messages, whatever it holds."""
    await sent(subject.store, clock, 5)
    await fail(subject.store, clock, 5)
    pages: list[Page] = [
        await subject.store.list_sent(limit=3),
        await subject.store.list_sent(limit=3, page=2),
        await subject.store.list_messages(limit=3),
        await subject.store.list_messages(limit=3, where=MessageFilter(status=Status.FAILED)),
    ]
    assert [len(p.items) for p in pages] == [3, 2, 3, 3]
