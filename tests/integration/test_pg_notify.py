"""Instant pickup on the real PostgreSQL: the triggers of migration 0005 and the LISTEN adapter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.pg_notify import APPLICATION_NAME, PgNewMessageSignal
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import NewMessage, Status
from sms_dispatch.ports import SWITCH_CHANGED
from sms_dispatch.pump import Pump
from tests.fakes import RecordingSmsProvider

pytestmark = pytest.mark.postgres

INSERT = """INSERT INTO messages ("to", content) VALUES ('+905551111111', 'hello')"""
payloads: list[str] = []
"""What the ``signal`` fixture's listener was told, in order."""


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on a fresh PostgreSQL database."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+asyncpg"), pool_size=4)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def signal(pg: AsyncEngine) -> AsyncIterator[tuple[PgNewMessageSignal, asyncio.Event]]:
    """A connected listener and an event its notifications set (cleared once connected)."""
    listener = PgNewMessageSignal(pg.url)
    woken = asyncio.Event()
    payloads.clear()
    listener.subscribe(lambda payload: (payloads.append(payload), woken.set()))
    await listener.start()
    assert await listener.wait_listening(timeout_s=10)
    woken.clear()  # the wake-up every (re)connect gives
    yield listener, woken
    await listener.close()


async def execute(url: URL, sql: str) -> None:
    """Run one statement on its own connection."""
    connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def test_an_insert_notifies_the_listener(
    pg: AsyncEngine, signal: tuple[PgNewMessageSignal, asyncio.Event]
) -> None:
    """A plain-SQL INSERT into messages wakes the listener."""
    _, woken = signal
    await execute(pg.url, INSERT)
    await asyncio.wait_for(woken.wait(), timeout=10)


async def test_a_row_put_back_to_pending_notifies(
    pg: AsyncEngine, signal: tuple[PgNewMessageSignal, asyncio.Event]
) -> None:
    """An UPDATE that returns a row to PENDING (an operator's retry) wakes the listener."""
    _, woken = signal
    await execute(pg.url, f"{INSERT}; UPDATE messages SET status = 'FAILED'")  # noqa: S608 - constants
    await asyncio.wait_for(woken.wait(), timeout=10)
    woken.clear()
    await execute(pg.url, "UPDATE messages SET status = 'PENDING'")
    await asyncio.wait_for(woken.wait(), timeout=10)


async def test_a_switch_change_notifies_with_its_payload(
    pg: AsyncEngine, signal: tuple[PgNewMessageSignal, asyncio.Event]
) -> None:
    """Turning the fleet-wide switch off (any instance, any program) wakes listeners with 'switch'."""
    _, woken = signal
    payloads.clear()
    await SqlMessageStore(pg).set_running(False, now=datetime.now(UTC))
    await asyncio.wait_for(woken.wait(), timeout=10)
    assert payloads == [SWITCH_CHANGED]


async def test_a_claim_does_not_notify(
    pg: AsyncEngine, signal: tuple[PgNewMessageSignal, asyncio.Event]
) -> None:
    """Claiming (PENDING -> SENDING) wakes nobody: the hot path sends no notifications."""
    _, woken = signal
    store = SqlMessageStore(pg)
    await store.create(NewMessage("+905551111111", "hello"), now=datetime.now(UTC))
    await asyncio.wait_for(woken.wait(), timeout=10)
    woken.clear()
    claimed = await store.claim_due(
        limit=10, now=datetime.now(UTC), lease_s=30, claim_token="t", claimed_by="test"
    )
    assert len(claimed) == 1
    await asyncio.sleep(0.5)
    assert not woken.is_set()


async def test_the_listener_reconnects_after_losing_its_connection(
    pg: AsyncEngine,
    signal: tuple[PgNewMessageSignal, asyncio.Event],
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    """Killed by the server, the listener reconnects, wakes once, hears inserts again, and the log
    says so in two lines (gone, back)."""
    listener, woken = signal
    database = pg.url.database
    await execute(
        pg.url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # noqa: S608 - constants of this test
        f" WHERE application_name = '{APPLICATION_NAME}' AND datname = '{database}'",
    )
    await asyncio.wait_for(woken.wait(), timeout=15)  # the reconnect's own wake-up
    assert listener.connects == 2
    woken.clear()
    await execute(pg.url, INSERT)
    await asyncio.wait_for(woken.wait(), timeout=10)
    lines = [line for line in json_log() if str(line.get("doing", "")).startswith("listening")]
    assert [line["event"] for line in lines] == ["database unavailable", "database available again"]


async def test_an_insert_reaches_an_idle_pump_long_before_its_poll(pg: AsyncEngine) -> None:
    """With the listener connected and the poll a minute away, a plain-SQL insert is sent at once."""
    clock = SystemClock()
    store, provider = SqlMessageStore(pg), RecordingSmsProvider()
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=10, max_workers=2),
        instance_name="test",
    )
    listener = PgNewMessageSignal(pg.url)
    await listener.start()
    assert await listener.wait_listening(timeout_s=10)
    pump = Pump(deliverer=deliverer, control=store, signal=listener, clock=clock, idle_poll_s=60.0)
    task = asyncio.create_task(pump.run())
    try:
        await asyncio.sleep(0.3)  # let it find the queue empty and go idle
        started = time.monotonic()
        await execute(pg.url, INSERT)
        while not provider.sent:
            assert time.monotonic() - started < 10, "the insert was not picked up"
            await asyncio.sleep(0.01)
    finally:
        pump.close()
        await asyncio.wait_for(task, timeout=10)
        await listener.close()
    stored = await store.get(provider.sent[0].id)
    assert stored is not None and stored.status is Status.SUCCESS
