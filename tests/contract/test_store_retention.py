"""Store contract: retention, pruning old finished messages with their attempt history."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status, Transition
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject, add, attempt_of, claim, sent, stored


async def test_prune_sent_deletes_old_success_rows_oldest_first(subject: Subject, clock: FakeClock) -> None:
    """prune_sent deletes SUCCESS rows sent before the cutoff, oldest first, at most ``limit``."""
    old = await sent(subject.store, clock, 3)
    clock.advance(1)
    cutoff = clock.now()
    recent = await sent(subject.store, clock, 1)
    assert await subject.store.prune_sent(before=cutoff, limit=2) == 2
    assert [await subject.store.get(m.id) for m in old[:2]] == [None, None]
    assert await subject.store.prune_sent(before=cutoff, limit=2) == 1
    assert await subject.store.prune_sent(before=cutoff, limit=2) == 0
    assert await subject.store.get(recent[0].id) == recent[0]


async def test_prune_sent_leaves_other_statuses_and_deleted_rows(subject: Subject, clock: FakeClock) -> None:
    """prune_sent never deletes PENDING, SENDING, FAILED or soft-deleted SUCCESS rows."""
    [kept_deleted] = await sent(subject.store, clock, 1)
    await subject.soft_delete(kept_deleted.id, clock.now())
    failed, claimed, pending = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(failed.id, "token-a", Status.FAILED)], now=clock.now())
    clock.advance(3600)
    assert await subject.store.prune_sent(before=clock.now(), limit=100) == 0
    assert [(await stored(subject.store, m.id)).status for m in (failed, claimed, pending)] == [
        Status.FAILED,
        Status.SENDING,
        Status.PENDING,
    ]


async def test_prune_failed_deletes_old_failed_and_cancelled_rows(subject: Subject, clock: FakeClock) -> None:
    """prune_failed deletes FAILED and CANCELLED rows last changed before the cutoff, nothing newer."""
    failed, cancelled, pending = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=1)
    await subject.store.finish([Transition(failed.id, "token-a", Status.FAILED)], now=clock.now())
    assert await subject.store.cancel(cancelled.id, now=clock.now()) is not None
    clock.advance(10)
    cutoff = clock.now()
    [recent] = await add(subject.store, clock, 1)
    await claim(subject.store, clock, limit=5)
    await subject.store.finish([Transition(recent.id, "token-a", Status.FAILED)], now=clock.now())
    assert await subject.store.prune_failed(before=cutoff, limit=1) == 1
    assert await subject.store.prune_failed(before=cutoff, limit=100) == 1
    assert (await subject.store.get(failed.id), await subject.store.get(cancelled.id)) == (None, None)
    assert (await stored(subject.store, recent.id)).status is Status.FAILED
    assert (await stored(subject.store, pending.id)).status is Status.SENDING


async def test_pruning_a_message_deletes_its_attempt_history(subject: Subject, clock: FakeClock) -> None:
    """A pruned message's attempt records go with it."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    transition = Transition(claimed.id, "token-a", Status.SUCCESS, "p-1", sent_at=clock.now())
    await subject.store.finish([transition], now=clock.now(), attempts=[await attempt_of(claimed, clock)])
    assert len(await subject.store.history(message.id)) == 1
    clock.advance(1)
    assert await subject.store.prune_sent(before=clock.now(), limit=10) == 1
    assert await subject.store.history(message.id) == []


async def test_pruning_deletes_attempt_rows_in_the_database(
    sql_engine: AsyncEngine, clock: FakeClock
) -> None:
    """The database's cascade removes message_attempts rows of a pruned message (SQLite included)."""
    store = SqlMessageStore(sql_engine)
    await add(store, clock, 1)
    [claimed] = await claim(store, clock)
    await store.finish(
        [Transition(claimed.id, "token-a", Status.FAILED)],
        now=clock.now(),
        attempts=[await attempt_of(claimed, clock)],
    )
    clock.advance(1)
    assert await store.prune_failed(before=clock.now(), limit=10) == 1
    async with sql_engine.connect() as connection:
        left = await connection.scalar(text("SELECT count(*) FROM message_attempts"))
    assert left == 0


async def test_counts_follow_pruning(subject: Subject, clock: FakeClock) -> None:
    """After pruning, count_by_status no longer counts the deleted messages."""
    await sent(subject.store, clock, 3)
    clock.advance(1)
    await subject.store.prune_sent(before=clock.now(), limit=2)
    assert (await subject.store.count_by_status())[Status.SUCCESS] == 1
