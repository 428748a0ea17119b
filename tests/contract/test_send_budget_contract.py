"""The fleet-wide send budget (MESSAGE_RATE_LIMIT) on every store: in-memory, SQLite, PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_store import SqlMessageStore
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject

# The store contract's fixtures (tests/contract/conftest.py) give every kind of store, and two
# instances on one SQL database.

RATE_PER_S = 10.0
BURST_S = 1.0


async def take(subject: Subject, clock: FakeClock, want: int) -> int:
    """Take up to ``want`` sends at the clock's time."""
    return await subject.store.take_send_budget(want, now=clock.now(), rate_per_s=RATE_PER_S, burst_s=BURST_S)


async def test_a_fresh_budget_grants_one_burst(subject: Subject, clock: FakeClock) -> None:
    """A store that never paced grants a burst's worth (rate x burst) and no more."""
    assert await take(subject, clock, 100) == 10
    assert await take(subject, clock, 100) == 0


async def test_the_budget_refills_with_time(subject: Subject, clock: FakeClock) -> None:
    """After the burst is spent, each 1/rate seconds adds one send."""
    await take(subject, clock, 100)
    clock.advance(0.5)
    assert await take(subject, clock, 100) == 5


async def test_an_idle_budget_never_grows_past_one_burst(subject: Subject, clock: FakeClock) -> None:
    """A long pause refills at most one burst."""
    await take(subject, clock, 100)
    clock.advance(3600)
    assert await take(subject, clock, 100) == 10


async def test_unused_sends_can_be_given_back(subject: Subject, clock: FakeClock) -> None:
    """Sends given back are granted again at once."""
    assert await take(subject, clock, 10) == 10
    await subject.store.return_send_budget(4, now=clock.now(), rate_per_s=RATE_PER_S)
    assert await take(subject, clock, 100) == 4


async def test_two_instances_share_one_budget(two_engines: list[AsyncEngine], clock: FakeClock) -> None:
    """Instances taking at once get one burst between them, never one each."""
    stores = [SqlMessageStore(engine) for engine in two_engines]

    async def take_many(store: SqlMessageStore) -> int:
        granted = 0
        for _ in range(10):
            granted += await store.take_send_budget(
                1, now=clock.now(), rate_per_s=RATE_PER_S, burst_s=BURST_S
            )
        return granted

    granted = await asyncio.gather(*(take_many(store) for store in stores))
    assert sum(granted) == 10
