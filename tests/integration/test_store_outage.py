"""The SQL store with its database gone: every kind of call raises DependencyUnavailable, and the
first call after the database is back answers. PostgreSQL is cut off by a proxy of the test's
own (the shared server is left alone); SQLite by a file it cannot open."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import NewMessage
from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.ports import MessageFilter
from tests.conftest import PG_ADMIN_URL
from tests.contract.store_helpers import async_pg_url
from tests.tcp_proxy import TcpProxy

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NEW = NewMessage(to="+905551111111", content="hello")

Call = Callable[[SqlMessageStore], Awaitable[Any]]


async def _hold_lock(store: SqlMessageStore) -> bool:
    async with store.exclusive("retention") as held:
        return held


CALLS: dict[str, Call] = {
    "create": lambda store: store.create(NEW, now=NOW),
    "list_sent (a listing that retries once)": lambda store: store.list_sent(limit=5),
    "list_messages": lambda store: store.list_messages(limit=5, where=MessageFilter()),
    "count_by_status": lambda store: store.count_by_status(),
    "claim_due": lambda store: store.claim_due(
        limit=5, now=NOW, lease_s=30, claim_token="t", claimed_by="test"
    ),
    "scheduler_state": lambda store: store.scheduler_state(),
    "set_running": lambda store: store.set_running(False, now=NOW),
    "exclusive": _hold_lock,
}


@pytest.fixture
async def proxied_store(pg_url: str) -> AsyncIterator[tuple[SqlMessageStore, TcpProxy]]:
    """A migrated store whose connections go through a proxy the test can cut."""
    host_port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        url = async_pg_url(pg_url.replace(host_port, f"127.0.0.1:{proxy.port}"))
        engine = create_engine(url, pool_size=2)
        try:
            await migrate(engine)
            yield SqlMessageStore(engine), proxy
        finally:
            await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_postgres_cut_off_is_dependency_unavailable_and_back_after(
    proxied_store: tuple[SqlMessageStore, TcpProxy], call: Call
) -> None:
    """With pooled connections closed and new ones refused, a call raises DependencyUnavailable
    naming the database; once the proxy lets connections back, the same call answers."""
    store, proxy = proxied_store
    await call(store)  # a pooled connection exists, as in a running service
    proxy.cut()
    with pytest.raises(DependencyUnavailable) as raised:
        await call(store)
    assert raised.value.dependency == "database"
    proxy.restore()
    await call(store)


@pytest.mark.postgres
async def test_the_readiness_ping_says_false_rather_than_raising(
    proxied_store: tuple[SqlMessageStore, TcpProxy],
) -> None:
    """ping() answers False while the database is cut off, True once it is back."""
    store, proxy = proxied_store
    proxy.cut()
    assert await store.ping() is False
    proxy.restore()
    assert await store.ping() is True


async def test_a_sqlite_file_that_cannot_be_opened_is_dependency_unavailable(tmp_path: Path) -> None:
    """SQLite whose file cannot be opened (its folder is gone) is an outage, not a 500."""
    url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "gone" / "sms.db"))
    engine = create_engine(url, pool_size=1)
    try:
        with pytest.raises(DependencyUnavailable):
            await SqlMessageStore(engine).list_sent(limit=5)
    finally:
        await engine.dispose()
        await aiosqlite_threads_ended()


async def aiosqlite_threads_ended(timeout_s: float = 5.0) -> None:
    """Wait while aiosqlite's worker threads end: after a failed connect its thread answers a stop
    request on this event loop, and fails (a thread exception) if the loop has closed by then."""
    deadline = time.monotonic() + timeout_s
    while any("_connection_worker_thread" in thread.name for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "an aiosqlite worker thread did not end"
        await asyncio.sleep(0.01)
