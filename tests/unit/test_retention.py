"""Retention with the in-memory store: what is pruned, in batches, one pruner at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.domain import Message, NewMessage, Status, Transition
from sms_dispatch.retention import LOCK_NAME, Pruner, RetentionPolicy
from tests.conftest import FakeClock

DAY_S = 86400.0


def pruner(store: InMemoryMessageStore, clock: FakeClock, **policy: Any) -> Pruner:
    """Build a pruner over ``store`` with 30/90-day retention and no pause, unless told otherwise."""
    rules = RetentionPolicy(**{"pause_s": 0.0, **policy})
    return Pruner(store=store, control=store, clock=clock, policy=rules)


async def sent_count(store: InMemoryMessageStore) -> int:
    """Return how many SUCCESS messages the store holds."""
    return (await store.count_by_status())[Status.SUCCESS]


async def wait_until_no_sent(store: InMemoryMessageStore, timeout_s: float = 5.0) -> None:
    """Wait until the store holds no SUCCESS message (the side task pruned them)."""
    async with asyncio.timeout(timeout_s):
        while await sent_count(store):
            await asyncio.sleep(0.01)


async def finished(
    store: InMemoryMessageStore, clock: FakeClock, status: Status, count: int = 1
) -> list[Message]:
    """Create ``count`` messages and finish them in ``status`` at the clock's time."""
    made = [await store.create(NewMessage("+905551111111", f"m{n}"), now=clock.now()) for n in range(count)]
    claimed = await store.claim_due(limit=count, now=clock.now(), lease_s=30, claim_token="t", claimed_by="w")
    sent_at = clock.now() if status is Status.SUCCESS else None
    await store.finish(
        [Transition(m.id, "t", status, "p", sent_at=sent_at) for m in claimed], now=clock.now()
    )
    return made


async def test_prunes_success_after_its_retention_and_failed_after_its_own(clock: FakeClock) -> None:
    """A 31-day-old SUCCESS goes; a 31-day-old FAILED stays until 90 days have passed."""
    store = InMemoryMessageStore()
    [old_sent] = await finished(store, clock, Status.SUCCESS)
    [old_failed] = await finished(store, clock, Status.FAILED)
    clock.advance(31 * DAY_S)
    [new_sent] = await finished(store, clock, Status.SUCCESS)
    report = await pruner(store, clock).prune()
    assert (report.sent, report.failed, report.skipped) == (1, 0, False)
    assert await store.get(old_sent.id) is None
    assert await store.get(old_failed.id) is not None and await store.get(new_sent.id) is not None
    clock.advance(60 * DAY_S)
    assert (await pruner(store, clock).prune()).failed == 1
    assert await store.get(old_failed.id) is None


async def test_zero_keeps_forever(clock: FakeClock) -> None:
    """With both retentions 0 nothing is deleted, however old."""
    store = InMemoryMessageStore()
    await finished(store, clock, Status.SUCCESS)
    await finished(store, clock, Status.FAILED)
    clock.advance(3650 * DAY_S)
    report = await pruner(store, clock, success_s=0, failed_s=0).prune()
    assert (report.sent, report.failed) == (0, 0)
    assert sum((await store.count_by_status()).values()) == 2


async def test_pending_messages_are_never_pruned(clock: FakeClock) -> None:
    """An old PENDING message survives any retention."""
    store = InMemoryMessageStore()
    message = await store.create(NewMessage("+905551111111", "waiting"), now=clock.now())
    clock.advance(365 * DAY_S)
    await pruner(store, clock, success_s=1, failed_s=1).prune()
    assert await store.get(message.id) is not None


async def test_deletes_in_batches_of_the_policy_size(clock: FakeClock) -> None:
    """Seven old rows with batch size 3 take three batches (3, 3, then a short 1)."""
    store = InMemoryMessageStore()
    await finished(store, clock, Status.SUCCESS, count=7)
    clock.advance(31 * DAY_S)
    report = await pruner(store, clock, batch_size=3, failed_s=0).prune()
    assert (report.sent, report.batches) == (7, 3)


async def test_skips_while_another_pruner_holds_the_lock(clock: FakeClock) -> None:
    """While the retention lock is held elsewhere a round deletes nothing and says it skipped."""
    store = InMemoryMessageStore()
    await finished(store, clock, Status.SUCCESS)
    clock.advance(31 * DAY_S)
    async with store.exclusive(LOCK_NAME) as held:
        assert held
        report = await pruner(store, clock).prune()
    assert report.skipped and report.sent == 0
    assert (await pruner(store, clock).prune()).sent == 1


async def test_a_set_stop_ends_the_round_between_batches(clock: FakeClock) -> None:
    """With stop already set, a round deletes no batch."""
    store = InMemoryMessageStore()
    await finished(store, clock, Status.SUCCESS, count=3)
    clock.advance(31 * DAY_S)
    stop = asyncio.Event()
    stop.set()
    assert (await pruner(store, clock, batch_size=1).prune(stop)).sent == 0


async def test_run_prunes_every_interval_until_stopped(clock: FakeClock) -> None:
    """The side task prunes after its first delay, again each interval, and ends when stopped."""
    store = InMemoryMessageStore()
    await finished(store, clock, Status.SUCCESS)
    clock.advance(31 * DAY_S)
    stop = asyncio.Event()
    task = asyncio.create_task(pruner(store, clock, interval_s=0.05).run(stop, first_run_delay_s=0.05))
    await wait_until_no_sent(store)
    await finished(store, clock, Status.SUCCESS)
    clock.advance(31 * DAY_S)
    await wait_until_no_sent(store)
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_retention_counts_from_sent_at_for_success(clock: FakeClock) -> None:
    """A SUCCESS row is kept until RETENTION_SUCCESS after its send, not its creation."""
    store = InMemoryMessageStore()
    message = await store.create(NewMessage("+905551111111", "late"), now=clock.now())
    clock.advance(29 * DAY_S)
    [claimed] = await store.claim_due(limit=1, now=clock.now(), lease_s=30, claim_token="t", claimed_by="w")
    await store.finish(
        [Transition(claimed.id, "t", Status.SUCCESS, "p", sent_at=clock.now())], now=clock.now()
    )
    clock.advance(2 * DAY_S)
    assert (await pruner(store, clock).prune()).sent == 0
    clock.advance(timedelta(days=29).total_seconds())
    assert (await pruner(store, clock).prune()).sent == 1
    assert await store.get(message.id) is None
