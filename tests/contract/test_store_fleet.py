"""Store contract: what the instances share: the scheduler switch, batch slots, locks, heartbeats, ping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.ports import InstanceInfo
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject, async_pg_url, migrated_engine


async def test_scheduler_is_running_on_a_new_store(subject: Subject) -> None:
    """A fresh store's scheduler switch is on, and no slot has been taken."""
    state = await subject.store.scheduler_state()
    assert (state.running, state.last_run_at) == (True, None)


async def test_set_running_round_trips(subject: Subject, clock: FakeClock) -> None:
    """set_running stores the switch and returns it; scheduler_state reads it back."""
    stopped = await subject.store.set_running(False, now=clock.now())
    assert (stopped.running, stopped.updated_at) == (False, clock.now())
    assert await subject.store.scheduler_state() == stopped
    clock.advance(1)
    assert (await subject.store.set_running(True, now=clock.now())).running is True
    assert (await subject.store.scheduler_state()).running is True


async def test_take_batch_slot_grants_once_per_interval(subject: Subject, clock: FakeClock) -> None:
    """A slot is granted, refused until interval_s has passed, then granted again."""
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is True
    assert (await subject.store.scheduler_state()).last_run_at == clock.now()
    clock.advance(119)
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is False
    clock.advance(1)
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is True


async def test_take_batch_slot_never_when_stopped(subject: Subject, clock: FakeClock) -> None:
    """No slot is granted while the switch is off, whatever the interval."""
    await subject.store.set_running(False, now=clock.now())
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=0) is False
    clock.advance(3600)
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is False


async def test_take_batch_slot_with_zero_interval_always_grants(subject: Subject, clock: FakeClock) -> None:
    """With interval 0 every call gets a slot while running."""
    results = [await subject.store.take_batch_slot(now=clock.now(), interval_s=0) for _ in range(3)]
    assert results == [True, True, True]


async def test_concurrent_slot_takers_get_one_slot(two_engines: list[AsyncEngine], clock: FakeClock) -> None:
    """Of many instances asking for the same slot at once, exactly one gets it."""
    stores = [SqlMessageStore(engine) for engine in two_engines] * 4
    granted = await asyncio.gather(*(s.take_batch_slot(now=clock.now(), interval_s=120) for s in stores))
    assert sorted(granted) == [False] * 7 + [True]


async def test_ping_answers_true(subject: Subject) -> None:
    """A reachable store answers its ping."""
    assert await subject.store.ping() is True


async def test_exclusive_is_held_by_one_at_a_time(subject: Subject) -> None:
    """While one holder has a lock, another gets False; after release the lock can be had again."""
    async with subject.store.exclusive("retention") as first:
        async with subject.store.exclusive("retention") as second:
            assert (first, second) == (True, False)
        async with subject.store.exclusive("other") as other:
            assert other is True
    async with subject.store.exclusive("retention") as again:
        assert again is True


@pytest.mark.postgres
async def test_exclusive_is_fleet_wide_on_postgres(pg_url: str) -> None:
    """On PostgreSQL a lock held by one instance (its own pool) is refused to another."""
    engines = [await migrated_engine(async_pg_url(pg_url)) for _ in range(2)]
    try:
        first, second = (SqlMessageStore(engine) for engine in engines)
        async with first.exclusive("retention") as held, second.exclusive("retention") as refused:
            assert (held, refused) == (True, False)
        async with second.exclusive("retention") as later:
            assert later is True
    finally:
        for engine in engines:
            await engine.dispose()


def instance(name: str, clock: FakeClock, *, pid: int = 42) -> InstanceInfo:
    """Return an instance heartbeating at the clock's time."""
    return InstanceInfo(name, "host-1", pid, "0.1.0", clock.now() - timedelta(minutes=5), clock.now())


async def test_heartbeat_inserts_then_updates_an_instance(subject: Subject, clock: FakeClock) -> None:
    """A heartbeat adds the instance; the next one, by the same name, replaces its row."""
    await subject.store.heartbeat(instance("b", clock))
    await subject.store.heartbeat(instance("a", clock))
    clock.advance(5)
    newer = instance("a", clock, pid=43)
    await subject.store.heartbeat(newer)
    seen = await subject.store.live_instances(seen_since=clock.now() - timedelta(seconds=15))
    assert seen == [newer, instance("b", FakeClock(clock.now() - timedelta(seconds=5)))]


async def test_live_instances_leaves_out_silent_ones(subject: Subject, clock: FakeClock) -> None:
    """An instance whose last heartbeat is before ``seen_since`` is not listed; at it, it is."""
    await subject.store.heartbeat(instance("old", clock))
    clock.advance(15)
    await subject.store.heartbeat(instance("new", clock))
    assert [
        i.name for i in await subject.store.live_instances(seen_since=clock.now() - timedelta(seconds=15))
    ] == [
        "new",
        "old",
    ]
    late = clock.now() - timedelta(seconds=14)
    assert [i.name for i in await subject.store.live_instances(seen_since=late)] == ["new"]


async def test_remove_instance_takes_it_off_the_list(subject: Subject, clock: FakeClock) -> None:
    """A removed instance is no longer listed; removing an unknown one is harmless."""
    await subject.store.heartbeat(instance("a", clock))
    await subject.store.remove_instance("a")
    await subject.store.remove_instance("never-seen")
    assert await subject.store.live_instances(seen_since=clock.now() - timedelta(hours=1)) == []
