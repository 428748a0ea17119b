"""Listing contract: the all-messages listing and its filters, and the page size both listings keep."""

from __future__ import annotations

import pytest

from sms_dispatch.domain import Status
from sms_dispatch.ports import MessageFilter, Page, Position
from tests.conftest import FakeClock
from tests.contract.listing_helpers import fail, ids, newest_created_first, walk_messages
from tests.contract.store_helpers import Subject, add, sent


async def test_messages_lists_every_status_newest_first(subject: Subject, clock: FakeClock) -> None:
    """Without a filter every live message is listed, newest created_at first, with the total."""
    delivered = await sent(subject.store, clock, 2)
    failed = await fail(subject.store, clock, 2)
    pending = await add(subject.store, clock, 2)
    await subject.soft_delete(pending[0].id, clock.now())
    live = [*delivered, *failed, pending[1]]
    page = await subject.store.list_messages(limit=10)
    assert (ids(page.items), page.total, page.next_after) == (newest_created_first(live), 5, None)


async def test_messages_status_filter_lists_the_dead_letters(subject: Subject, clock: FakeClock) -> None:
    """status=FAILED lists only the dead letters, with their exact total."""
    await sent(subject.store, clock, 2)
    failed = await fail(subject.store, clock, 3)
    await add(subject.store, clock, 1)
    page = await subject.store.list_messages(limit=10, where=MessageFilter(status=Status.FAILED))
    assert (ids(page.items), page.total) == (newest_created_first(failed), 3)


async def test_messages_recipient_and_window_filter_created_at(subject: Subject, clock: FakeClock) -> None:
    """``to`` with ``since``/``until`` on created_at lists that slice only, with no total."""
    created = await add(subject.store, clock, 6)
    window = MessageFilter(to=created[4].to, since=created[0].created_at, until=created[5].created_at)
    page = await subject.store.list_messages(limit=10, where=window)
    assert (ids(page.items), page.total) == ([created[4].id], None)
    everyone = MessageFilter(since=created[1].created_at, until=created[4].created_at)
    assert await walk_messages(subject.store, limit=2, where=everyone) == newest_created_first(created[1:4])


async def test_messages_keyset_walk_is_stable_while_rows_arrive(subject: Subject, clock: FakeClock) -> None:
    """Rows created between pages don't shift the walk: each older row comes exactly once."""
    failed = await fail(subject.store, clock, 5)
    dead = MessageFilter(status=Status.FAILED)
    first = await subject.store.list_messages(limit=2, where=dead)
    await fail(subject.store, clock, 2)
    assert first.next_after is not None
    rest = await subject.store.list_messages(limit=2, after=first.next_after, where=dead)
    walked = ids(first.items) + ids(rest.items)
    while rest.next_after is not None:
        rest = await subject.store.list_messages(limit=2, after=rest.next_after, where=dead)
        walked.extend(ids(rest.items))
    assert walked == newest_created_first(failed)


async def test_messages_position_needs_a_time(subject: Subject, clock: FakeClock) -> None:
    """A position without created_at is a ValueError in the listing by created_at."""
    [message] = await add(subject.store, clock, 1)
    with pytest.raises(ValueError, match="created_at"):
        await subject.store.list_messages(limit=1, after=Position(None, message.id))


async def test_listing_pages_hold_at_most_limit_rows(subject: Subject, clock: FakeClock) -> None:
    """Every listing returns at most ``limit`` messages, whatever it holds."""
    await sent(subject.store, clock, 5)
    await fail(subject.store, clock, 5)
    pages: list[Page] = [
        await subject.store.list_sent(limit=3),
        await subject.store.list_sent(limit=3, page=2),
        await subject.store.list_messages(limit=3),
        await subject.store.list_messages(limit=3, where=MessageFilter(status=Status.FAILED)),
    ]
    assert [len(p.items) for p in pages] == [3, 2, 3, 3]
