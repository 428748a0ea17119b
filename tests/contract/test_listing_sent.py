"""Listing contract: the sent listing: keyset walks, page/limit pages, totals and filters."""

from __future__ import annotations

import pytest

from sms_dispatch.domain import Status, Transition
from sms_dispatch.ports import MessageFilter
from tests.conftest import FakeClock
from tests.contract.listing_helpers import ids, newest_sent_first, walk_sent
from tests.contract.store_helpers import Subject, add, claim, sent


async def test_sent_keyset_walk_covers_every_row_once(subject: Subject, clock: FakeClock) -> None:
    """Following next_after from the first page lists every sent message once, newest first."""
    delivered = await sent(subject.store, clock, 7)
    assert await walk_sent(subject.store, limit=3) == newest_sent_first(delivered)


async def test_sent_last_full_page_has_no_next(subject: Subject, clock: FakeClock) -> None:
    """A page that ends exactly at the last row has no next_after (no empty page follows)."""
    await sent(subject.store, clock, 4)
    first = await subject.store.list_sent(limit=2)
    assert first.next_after is not None
    last = await subject.store.list_sent(limit=2, after=first.next_after)
    assert (len(last.items), last.next_after) == (2, None)


async def test_sent_cursor_is_stable_while_messages_are_sent(subject: Subject, clock: FakeClock) -> None:
    """Messages sent between two pages neither shift nor repeat the rows after the cursor."""
    delivered = await sent(subject.store, clock, 6)
    first = await subject.store.list_sent(limit=2)
    await sent(subject.store, clock, 3)
    assert first.next_after is not None
    rest = await subject.store.list_sent(limit=10, after=first.next_after)
    assert ids(rest.items) == newest_sent_first(delivered)[2:]


async def test_sent_offset_page_matches_the_keyset_page(subject: Subject, clock: FakeClock) -> None:
    """Page 2 by page/limit holds the same rows as the page after page 1's next_after."""
    await sent(subject.store, clock, 5)
    first = await subject.store.list_sent(limit=2)
    assert first.next_after is not None
    by_cursor = await subject.store.list_sent(limit=2, after=first.next_after)
    by_page = await subject.store.list_sent(limit=2, page=2)
    assert (by_page.items, by_page.next_after) == (by_cursor.items, by_cursor.next_after)


async def test_sent_with_a_cursor_ignores_page_and_keeps_the_total(
    subject: Subject, clock: FakeClock
) -> None:
    """With ``after`` the page number is ignored and the exact total still comes back."""
    await sent(subject.store, clock, 3)
    first = await subject.store.list_sent(limit=1)
    assert first.next_after is not None
    second = await subject.store.list_sent(limit=1, page=50, after=first.next_after)
    assert (len(second.items), second.total) == (1, 3)


async def test_sent_filter_by_recipient_has_no_total(subject: Subject, clock: FakeClock) -> None:
    """``to`` lists only that recipient's sent messages, and total is None."""
    delivered = await sent(subject.store, clock, 3)
    page = await subject.store.list_sent(limit=10, where=MessageFilter(to=delivered[1].to))
    assert (ids(page.items), page.total) == ([delivered[1].id], None)


async def test_sent_filter_by_window_bounds_sent_at(subject: Subject, clock: FakeClock) -> None:
    """``since`` (inclusive) and ``until`` (exclusive) bound sent_at, not created_at."""
    delivered = await sent(subject.store, clock, 4)
    window = MessageFilter(since=delivered[1].sent_at, until=delivered[3].sent_at)
    assert await walk_sent(subject.store, limit=1, where=window) == [delivered[2].id, delivered[1].id]


async def test_sent_filtered_offset_pages(subject: Subject, clock: FakeClock) -> None:
    """page/limit pages a filtered listing too, in the same order."""
    delivered = await sent(subject.store, clock, 5)
    window = MessageFilter(since=delivered[0].sent_at)
    pages = [await subject.store.list_sent(limit=2, page=n, where=window) for n in (1, 2, 3)]
    assert [m.id for p in pages for m in p.items] == newest_sent_first(delivered)


async def test_sent_rows_without_sent_at_are_walked_once(subject: Subject, clock: FakeClock) -> None:
    """SUCCESS rows without sent_at (written by hand) are listed once, wherever the database puts them."""
    created = await add(subject.store, clock, 5)
    claimed = await claim(subject.store, clock)
    finished = [
        Transition(m.id, "token-a", Status.SUCCESS, f"p-{n}", sent_at=None if n % 2 else clock.now())
        for n, m in enumerate(claimed)
    ]
    await subject.store.finish(finished, now=clock.now())
    walked = await walk_sent(subject.store, limit=1)
    assert sorted(walked) == sorted(ids(created))


async def test_sent_listing_refuses_another_status(subject: Subject) -> None:
    """The sent listing is SUCCESS only: a filter naming another status is a ValueError."""
    with pytest.raises(ValueError, match="SUCCESS"):
        await subject.store.list_sent(limit=1, where=MessageFilter(status=Status.FAILED))
