"""Listings after the server dropped the pooled connections (as a PostgreSQL restart does), with
no pre-ping: the pool replaces closed connections at checkout, and a read that still meets a
dropped one runs once more on a fresh connection."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]
import pytest

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status
from tests.contract.store_helpers import async_pg_url

pytestmark = pytest.mark.postgres


async def drop_sessions(pg_url: str) -> int:
    """Terminate every other session on the test database; return how many."""
    admin = await asyncpg.connect(pg_url)
    try:
        dropped: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return dropped


@pytest.mark.parametrize("settle_s", [0.0, 0.2], ids=["at-once", "after-the-close-is-seen"])
async def test_listings_survive_dropped_connections(pg_url: str, settle_s: float) -> None:
    """Listings and counts answer right after every pooled connection was terminated."""
    engine = create_engine(async_pg_url(pg_url), pool_size=2)
    try:
        await migrate(engine)
        store = SqlMessageStore(engine)
        await asyncio.gather(store.list_sent(limit=5), store.list_messages(limit=5))  # two pooled
        assert await drop_sessions(pg_url) >= 1
        await asyncio.sleep(settle_s)
        assert (await store.list_sent(limit=5)).total == 0
        assert (await store.list_messages(limit=5)).items == []
        assert (await store.count_by_status())[Status.SUCCESS] == 0
    finally:
        await engine.dispose()
