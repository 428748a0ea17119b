"""The store's listings on SQLAlchemy Core: sent messages, all messages, and the kept counts.

``SqlListing`` is a part of ``SqlMessageStore`` kept in its own module. Every listing reads one
index range newest first (see the indexes of migration 0003) and stops after ``limit`` rows:

- keyset (``after``): a row comparison ``(sent_at, id) < (:at, :id)`` the index seeks to, so
  a page costs the same at any depth;
- offset (``page``, the Go service's contract): a deferred join, which skips the first rows
  in the index alone (an index-only scan once the table is vacuumed) and reads just the
  ``limit`` rows it returns from the table;
- one more statement reads the id of the row after the last one (one step further along
  the same index) and the total, so no listing loads more than ``limit`` messages.

Totals come from ``message_counts`` plus the deltas not yet folded into it (kept by the
triggers of migration 0003), never from counting ``messages``. On PostgreSQL reads run in
autocommit: two statements, two round trips (plus the pool's pre-ping).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    func,
    literal,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sms_dispatch.adapters.sql_statements import from_row
from sms_dispatch.adapters.tables import (
    SUCCESS,
    UtcDateTime,
    Uuid36,
    message_count_deltas,
    message_counts,
    messages,
)
from sms_dispatch.domain import Message, Status
from sms_dispatch.ports import MessageFilter, Page, Position

_m = messages
_live = _m.c.deleted_at.is_(None)
_NO_FILTER = MessageFilter()

# Statuses as literals: the planner then knows which status it reads (a generic plan for a
# bound `status = $1` could pick the wrong index for a rare status such as FAILED).
_STATUS_LITERAL = {status: literal_column(f"'{status.value}'", String()) for status in Status}

# The kept counts and the deltas not yet folded in: read together, in one snapshot, exact.
_counts = union_all(
    select(message_counts.c.status, message_counts.c.total.label("n")),
    select(message_count_deltas.c.status, message_count_deltas.c.delta.label("n")),
).subquery("counts")
COUNTS_BY_STATUS = select(_counts.c.status, func.sum(_counts.c.n)).group_by(_counts.c.status)


def count_statement(status: Status | None) -> Select[Any]:
    """Return the query of how many live messages have ``status`` (every status when None)."""
    statement = select(func.coalesce(func.sum(_counts.c.n), 0))
    return statement if status is None else statement.where(_counts.c.status == status.value)


def _filtered(where: MessageFilter, time: ColumnElement[Any]) -> list[ColumnElement[bool]]:
    """The conditions of the filter's recipient and time window (on ``time``)."""
    conditions: list[ColumnElement[bool]] = []
    if where.to is not None:
        conditions.append(_m.c.to == where.to)
    if where.since is not None:
        conditions.append(time >= where.since)
    if where.until is not None:
        conditions.append(time < where.until)
    return conditions


def _unfiltered(where: MessageFilter) -> bool:
    return where.to is None and where.since is None and where.until is None


class SqlListing:
    """The listing methods of ``SqlMessageStore``."""

    _engine: AsyncEngine
    _postgres: bool

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
        conditions = [_m.c.status == SUCCESS, _live, *_filtered(where, _m.c.sent_at)]
        order = (_m.c.sent_at.desc(), _m.c.id.desc())
        if after is not None:
            rows = self._sent_after(after, conditions, limit=limit)
        elif page > 1:
            skipped = select(_m.c.id).where(*conditions).order_by(*order).limit(limit)
            rows = select(_m).where(_m.c.id.in_(skipped.offset((page - 1) * limit))).order_by(*order)
        else:
            rows = select(_m).where(*conditions).order_by(*order).limit(limit)
        return await self._cut(
            rows,
            limit=limit,
            position_of=lambda message: Position(message.sent_at, message.id),
            following=lambda last: self._sent_after(last, conditions, limit=1, ids_only=True),
            total=count_statement(Status.SUCCESS) if _unfiltered(where) else None,
        )

    async def list_messages(
        self, *, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return live messages newest ``created_at`` first, after ``after`` when given."""
        where = where or _NO_FILTER
        if after is not None and after.at is None:
            raise ValueError("a position in the listing by created_at needs its created_at")
        conditions = [_live, *_filtered(where, _m.c.created_at)]
        if where.status is not None:
            conditions.append(_m.c.status == _STATUS_LITERAL[where.status])
        order = (_m.c.created_at.desc(), _m.c.id.desc())
        rows = select(_m).where(*conditions).order_by(*order).limit(limit)
        if after is not None:
            rows = rows.where(_created_after(after))
        return await self._cut(
            rows,
            limit=limit,
            position_of=lambda message: Position(message.created_at, message.id),
            following=lambda last: select(_m.c.id).where(*conditions, _created_after(last)).order_by(*order),
            total=count_statement(where.status) if _unfiltered(where) else None,
        )

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live messages are in each status, from the kept counts (zeros included)."""
        counts = dict.fromkeys(Status, 0)
        async with self._reading() as connection:
            for status, count in await connection.execute(COUNTS_BY_STATUS):
                if status in Status.__members__:
                    counts[Status(status)] = int(count)
        return counts

    async def _cut(
        self,
        rows: Select[Any],
        *,
        limit: int,
        position_of: Callable[[Message], Position],
        following: Callable[[Position], Select[Any]],
        total: Select[Any] | None,
    ) -> Page:
        """Read one page, then in one more statement whether rows follow its last one, and the total."""
        async with self._reading() as connection:
            items = [from_row(row) for row in await connection.execute(rows)]
            last = position_of(items[-1]) if len(items) == limit else None
            asked = []
            if last is not None:
                # A scalar subquery keeps its ORDER BY ... LIMIT 1 (an index seek); PostgreSQL
                # drops both inside EXISTS and may then scan the table.
                asked.append(following(last).limit(1).scalar_subquery().label("following"))
            if total is not None:
                asked.append(total.scalar_subquery().label("total"))
            answer = (await connection.execute(select(*asked))).one() if asked else None
        more = answer is not None and last is not None and answer.following is not None
        counted = None if answer is None or total is None else int(answer.total)
        return Page(items=items, total=counted, next_after=last if more else None)

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On PostgreSQL in autocommit: a read needs no transaction
        (each statement has its own snapshot under READ COMMITTED anyway), which saves the
        BEGIN and ROLLBACK round trips."""
        async with self._engine.connect() as connection:
            if self._postgres:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    def _sent_after(
        self, after: Position, conditions: list[ColumnElement[bool]], *, limit: int, ids_only: bool = False
    ) -> Select[Any]:
        """Up to ``limit`` rows after ``after`` in ``sent_at DESC, id DESC`` order; sent_at may be NULL.

        Each database puts NULLs where its own ``DESC`` does: first on PostgreSQL, last on SQLite.
        The rows after a position are one or two index ranges (arms): rows with a sent_at after
        it, rows without one after it. Each arm is its own seek (an ``OR`` of the two would scan
        the index from its start); two arms are merged with ``UNION ALL``, only when the position
        or the database's NULL order needs both.
        """
        dated = tuple_(_m.c.sent_at, _m.c.id) < tuple_(
            literal(after.at, UtcDateTime()), literal(after.id, Uuid36())
        )
        undated = and_(_m.c.sent_at.is_(None), _m.c.id < literal(after.id, Uuid36()))
        by_time, by_id = (_m.c.sent_at.desc(), _m.c.id.desc()), (_m.c.id.desc(),)
        arms: list[tuple[ColumnElement[bool], tuple[Any, ...]]]
        if after.at is None and self._postgres:
            arms = [(undated, by_id), (_m.c.sent_at.is_not(None), by_time)]
        elif after.at is None:
            arms = [(undated, by_id)]
        elif self._postgres:
            arms = [(dated, by_time)]
        else:
            arms = [(dated, by_time), (_m.c.sent_at.is_(None), by_id)]
        columns = (_m.c.id, _m.c.sent_at) if ids_only else tuple(_m.c)
        parts = [
            select(*columns).where(*conditions, arm).order_by(*order).limit(limit) for arm, order in arms
        ]
        if len(parts) == 1:
            return parts[0].with_only_columns(_m.c.id) if ids_only else parts[0]
        both = union_all(*(select(part.subquery()) for part in parts)).subquery()
        merged = select(both.c.id) if ids_only else select(both)
        return merged.order_by(both.c.sent_at.desc(), both.c.id.desc()).limit(limit)


def _created_after(after: Position) -> ColumnElement[bool]:
    """The rows after ``after`` in ``created_at DESC, id DESC`` order (created_at is never NULL)."""
    at, id_ = literal(after.at, UtcDateTime()), literal(after.id, Uuid36())
    return tuple_(_m.c.created_at, _m.c.id) < tuple_(at, id_)
