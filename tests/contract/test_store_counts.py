"""Store contract: the sent listing, counts by status, sends since a time and the queue's lag."""

from __future__ import annotations

from datetime import timedelta

from sms_dispatch.domain import Status, Transition
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject, add, claim, sent


async def test_list_sent_is_newest_first(subject: Subject, clock: FakeClock) -> None:
    """The sent listing shows SUCCESS rows by sent_at, newest first."""
    delivered = await sent(subject.store, clock, 3)
    page = await subject.store.list_sent(page=1, limit=10)
    assert [m.id for m in page.items] == [m.id for m in reversed(delivered)]
    assert page.items == list(reversed(delivered))


async def test_list_sent_pages_and_total(subject: Subject, clock: FakeClock) -> None:
    """Pages are cut by limit from page 1 on; total counts every SUCCESS row."""
    newest_first = list(reversed(await sent(subject.store, clock, 5)))
    pages = [await subject.store.list_sent(page=n, limit=2) for n in (1, 2, 3, 4)]
    assert [[m.id for m in p.items] for p in pages] == [
        [m.id for m in newest_first[0:2]],
        [m.id for m in newest_first[2:4]],
        [newest_first[4].id],
        [],
    ]
    assert {p.total for p in pages} == {5}


async def test_list_sent_leaves_out_other_statuses(subject: Subject, clock: FakeClock) -> None:
    """PENDING, SENDING and FAILED rows are not in the sent listing."""
    await sent(subject.store, clock, 1)
    first, _, _ = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(first.id, "token-a", Status.FAILED)], now=clock.now())
    assert (await subject.store.list_sent(page=1, limit=10)).total == 1


async def test_count_by_status_lists_every_status(subject: Subject, clock: FakeClock) -> None:
    """count_by_status has every status, zero where there is none."""
    assert await subject.store.count_by_status() == dict.fromkeys(Status, 0)
    await sent(subject.store, clock, 2)
    first, _, _ = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(first.id, "token-a", Status.FAILED)], now=clock.now())
    assert await subject.store.count_by_status() == {
        Status.PENDING: 1,
        Status.SENDING: 1,
        Status.SUCCESS: 2,
        Status.FAILED: 1,
        Status.CANCELLED: 0,
    }


# count_sent_since: the dashboard's throughput figures.


async def test_count_sent_since_includes_the_boundary(subject: Subject, clock: FakeClock) -> None:
    """count_sent_since counts SUCCESS rows sent at or after the given time, none before it."""
    delivered = await sent(subject.store, clock, 3)
    sent_times = [m.sent_at for m in delivered if m.sent_at is not None]
    assert [await subject.store.count_sent_since(t) for t in sent_times] == [3, 2, 1]
    assert await subject.store.count_sent_since(sent_times[-1] + timedelta(microseconds=1)) == 0


async def test_count_sent_since_leaves_out_unsent_and_deleted_rows(
    subject: Subject, clock: FakeClock
) -> None:
    """PENDING, SENDING, FAILED and soft-deleted rows are not counted as sent."""
    since = clock.now()
    first, _ = await sent(subject.store, clock, 2)
    failed, _, _ = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(failed.id, "token-a", Status.FAILED)], now=clock.now())
    await subject.soft_delete(first.id, clock.now())
    assert await subject.store.count_sent_since(since) == 1


# oldest_due_at: the queue's lag (operations).


async def test_oldest_due_at_is_none_without_due_messages(subject: Subject, clock: FakeClock) -> None:
    """oldest_due_at is None on an empty store and when every PENDING row is due later."""
    assert await subject.store.oldest_due_at(clock.now()) is None
    await add(subject.store, clock, 1)
    assert await subject.store.oldest_due_at(clock.now() - timedelta(hours=1)) is None


async def test_oldest_due_at_is_the_earliest_due_pending_row(subject: Subject, clock: FakeClock) -> None:
    """oldest_due_at is the due time of the oldest live PENDING row; claimed and deleted rows don't count."""
    claimed, deleted, waiting, _ = await add(subject.store, clock, 4, gap_s=10)
    await claim(subject.store, clock, limit=1)
    await subject.soft_delete(deleted.id, clock.now())
    assert claimed.next_attempt_at is not None
    assert await subject.store.oldest_due_at(clock.now()) == waiting.next_attempt_at
