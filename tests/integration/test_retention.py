"""Retention on real databases: batches, the attempt history, one pruner at a time, the side task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import message_attempts, messages
from sms_dispatch.bootstrap import bootstrap
from sms_dispatch.clock import SystemClock
from sms_dispatch.config import Settings
from sms_dispatch.retention import LOCK_NAME, Pruner, RetentionPolicy

NOW = datetime.now(UTC)


async def insert_finished(engine: AsyncEngine, status: str, count: int, *, age: timedelta) -> None:
    """Insert ``count`` messages finished ``age`` ago in ``status``, each with one attempt record."""
    at = NOW - age
    rows = [
        {
            "to": "+905551111111",
            "content": f"old {n}",
            "status": status,
            "attempts": 1,
            "sent_at": at if status == "SUCCESS" else None,
            "created_at": at,
            "updated_at": at,
            "next_attempt_at": at,
        }
        for n in range(count)
    ]
    async with engine.begin() as connection:
        ids = (await connection.execute(insert(messages).returning(messages.c.id), rows)).scalars().all()
        attempts = [
            {"message_id": i, "attempt": 1, "started_at": at, "duration_ms": 5.0, "outcome": "delivered"}
            for i in ids
        ]
        await connection.execute(insert(message_attempts), attempts)


async def count(engine: AsyncEngine, table: Table = messages) -> int:
    """Return how many rows ``table`` holds."""
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


def pruner_on(engine: AsyncEngine) -> Pruner:
    """A pruner over ``engine`` with the default retention, batches of 1,000 and no pause."""
    store = SqlMessageStore(engine)
    rules = RetentionPolicy(batch_size=1000, pause_s=0.0)
    return Pruner(store=store, control=store, clock=SystemClock(), policy=rules)


async def test_prunes_a_backlog_in_batches_with_its_history(engine: AsyncEngine) -> None:
    """2,500 old SUCCESS rows go in three batches of at most 1,000, their attempts with them."""
    await insert_finished(engine, "SUCCESS", 2500, age=timedelta(days=40))
    await insert_finished(engine, "SUCCESS", 3, age=timedelta(days=1))
    report = await pruner_on(engine).prune()
    assert (report.sent, report.batches) == (2500, 3 + 1)  # three for SUCCESS, one (empty) for FAILED
    assert await count(engine) == 3
    assert await count(engine, message_attempts) == 3


async def test_failed_and_cancelled_go_after_their_own_retention(engine: AsyncEngine) -> None:
    """FAILED and CANCELLED rows older than RETENTION_FAILED go; younger ones and PENDING stay."""
    await insert_finished(engine, "FAILED", 4, age=timedelta(days=100))
    await insert_finished(engine, "CANCELLED", 2, age=timedelta(days=100))
    await insert_finished(engine, "FAILED", 1, age=timedelta(days=50))
    await insert_finished(engine, "PENDING", 1, age=timedelta(days=500))
    report = await pruner_on(engine).prune()
    assert (report.sent, report.failed) == (0, 6)
    assert await count(engine) == 2


@pytest.mark.postgres
async def test_one_instance_prunes_at_a_time(pg_url: str) -> None:
    """While one instance holds the retention lock, another instance's round skips."""
    url = make_url(pg_url).set(drivername="postgresql+asyncpg")
    engines = [create_engine(url, pool_size=2) for _ in range(2)]
    try:
        await migrate(engines[0])
        await insert_finished(engines[0], "SUCCESS", 5, age=timedelta(days=40))
        first = SqlMessageStore(engines[0])
        async with first.exclusive(LOCK_NAME) as held:
            assert held
            report = await pruner_on(engines[1]).prune()
        assert report.skipped and await count(engines[0]) == 5
        assert (await pruner_on(engines[1]).prune()).sent == 5
    finally:
        for built in engines:
            await built.dispose()


async def test_the_dispatcher_process_prunes_on_its_own(tmp_path: Path) -> None:
    """With the dispatcher running, retention runs as a side task every RETENTION_INTERVAL."""
    settings = Settings(
        SQLITE_PATH=tmp_path / "side.db",
        SEED_ON_FIRST_RUN=0,
        RETENTION_INTERVAL="200ms",
        RETENTION_SUCCESS="1d",
    )
    async with bootstrap(settings) as services:
        await insert_finished(services.engine, "SUCCESS", 3, age=timedelta(days=2))
        async with asyncio.timeout(20):
            while await count(services.engine):
                await asyncio.sleep(0.1)
