"""Listing contract: counts by status, exact after every change, by the store or by plain SQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status, Transition
from tests.conftest import FakeClock
from tests.contract.listing_helpers import (
    DELETE_ONE_SUCCESS,
    HAND_INSERT,
    SEND_ONE_PENDING,
    SOFT_DELETE_ONE_PENDING,
    SOFT_DELETE_ONE_SUCCESS,
    counts,
    delta_rows,
    fail,
    recount,
    sql,
)
from tests.contract.store_helpers import LEASE_S, Subject, add, claim, sent
from tests.schema_helpers import migrate_to


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
            await connection.run_sync(migrate_to, "0002")
            await connection.commit()
        for statement in (HAND_INSERT, HAND_INSERT, HAND_INSERT):
            await sql(engine, statement)
        await sql(engine, SEND_ONE_PENDING)
        await sql(engine, SOFT_DELETE_ONE_PENDING)
        await migrate(engine)
        assert await SqlMessageStore(engine).count_by_status() == counts(PENDING=1, SUCCESS=1)
    finally:
        await engine.dispose()


# PostgreSQL: deltas, folding, TRUNCATE, several writers at once.


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
