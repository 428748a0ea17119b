"""The listings of ``InMemoryMessageStore``: same contract as ``SqlListing``, no I/O.

Rows are ordered as PostgreSQL orders them (``DESC`` puts a missing ``sent_at`` first). Each
row gets a rank, a tuple that sorts in listing order, so "after a position" is one comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from sms_dispatch.domain import Message, Status
from sms_dispatch.ports import MessageFilter, Page, Position

if TYPE_CHECKING:
    from sms_dispatch.adapters.memory_store import _Row

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_FILTER = MessageFilter()
Rank = tuple[int, int, int]


def _rank(at: datetime | None, id_: UUID) -> Rank:
    """Sort key of ``time DESC NULLS FIRST, id DESC``: smaller comes first."""
    if at is None:
        return (0, 0, -id_.int)
    return (1, -((at - _EPOCH) // timedelta(microseconds=1)), -id_.int)


def _sent_rank(message: Message) -> Rank:
    return _rank(message.sent_at, message.id)


def _created_rank(message: Message) -> Rank:
    return _rank(message.created_at, message.id)


def _within(time: datetime | None, where: MessageFilter) -> bool:
    """True when ``time`` is inside the filter's window (a missing time is in no window)."""
    if where.since is None and where.until is None:
        return True
    if time is None:
        return False
    return (where.since is None or time >= where.since) and (where.until is None or time < where.until)


def _unfiltered(where: MessageFilter) -> bool:
    return where.to is None and where.since is None and where.until is None


class InMemoryListing:
    """The listing methods of ``InMemoryMessageStore``."""

    _rows: dict[UUID, _Row]

    async def list_sent(
        self,
        *,
        limit: int,
        page: int = 1,
        after: Position | None = None,
        where: MessageFilter | None = None,
    ) -> Page:
        """Return live SUCCESS messages newest ``sent_at`` first: after ``after``, else page ``page``."""
        where = where or _NO_FILTER
        if where.status not in (None, Status.SUCCESS):
            raise ValueError(f"the sent listing lists SUCCESS messages, not {where.status}")
        sent = [m for m in self._live() if m.status is Status.SUCCESS]
        matching = [m for m in sent if where.to in (None, m.to) and _within(m.sent_at, where)]
        skip = 0 if after is not None else (page - 1) * limit
        items, next_after = _slice(matching, _sent_rank, after, skip, limit, lambda m: m.sent_at)
        return Page(items=items, total=len(sent) if _unfiltered(where) else None, next_after=next_after)

    async def list_messages(
        self, *, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return live messages newest ``created_at`` first, after ``after`` when given."""
        where = where or _NO_FILTER
        if after is not None and after.at is None:
            raise ValueError("a position in the listing by created_at needs its created_at")
        of_status = [m for m in self._live() if where.status in (None, m.status)]
        matching = [m for m in of_status if where.to in (None, m.to) and _within(m.created_at, where)]
        items, next_after = _slice(matching, _created_rank, after, 0, limit, lambda m: m.created_at)
        return Page(items=items, total=len(of_status) if _unfiltered(where) else None, next_after=next_after)

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live messages are in each status (every status, zero included)."""
        counts = dict.fromkeys(Status, 0)
        for message in self._live():
            counts[message.status] += 1
        return counts

    def _live(self) -> Iterable[Message]:
        return (row.message for row in self._rows.values() if row.live)


def _slice(
    matching: list[Message],
    rank: Callable[[Message], Rank],
    after: Position | None,
    skip: int,
    limit: int,
    time_of: Callable[[Message], datetime | None],
) -> tuple[list[Message], Position | None]:
    """Cut one page from ``matching`` in ``rank`` order; return it and where the next one starts."""
    ordered = sorted(matching, key=rank)
    if after is not None:
        start = _rank(after.at, after.id)
        ordered = [m for m in ordered if rank(m) > start]
    rest = ordered[skip:]
    items = rest[:limit]
    next_after = Position(time_of(items[-1]), items[-1].id) if len(rest) > limit else None
    return items, next_after
