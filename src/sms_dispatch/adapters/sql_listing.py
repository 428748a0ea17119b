"""The store's listings on SQLAlchemy Core: sent messages, all messages, and the kept counts.

``SqlListing`` is a part of ``SqlMessageStore`` kept in its own module. Every listing reads one
index range newest first (see the indexes of migration 0003) and stops after ``limit + 1``
rows, the last of which only says that a next page follows:

- keyset (``after``): a row comparison ``(sent_at, id) < (:at, :id)`` the index seeks to, so
  a page costs the same at any depth;
- offset (``page``, the Go service's contract): a deferred join, which skips the first rows
  in the index alone (an index-only scan once the table is vacuumed) and reads just the
  page's rows from the table; on PostgreSQL a deep page of the unfiltered sent listing skips
  whole hours by the kept per-hour counts instead (migration 0007), exact at any depth.

Totals come from ``message_counts`` plus the deltas not yet folded into it (kept by the
triggers of migration 0003), never from counting ``messages``. Page, next-page row and total
are one statement (``sql_listing_statements.py``): one round trip, one snapshot. On PostgreSQL
reads run in autocommit (no BEGIN/ROLLBACK round trips); a read that meets a connection the
server dropped (a PostgreSQL restart) is run once more on a fresh connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sms_dispatch.adapters.sql_listing_statements import (
    COUNTS_BY_STATUS,
    SENT_BY_HOURS,
    Way,
    count_statement,
    messages_statement,
    sent_statement,
)
from sms_dispatch.adapters.sql_rows import from_row
from sms_dispatch.domain import Message, Status
from sms_dispatch.ports import MessageFilter, Page, Position

_NO_FILTER = MessageFilter()

DEEP_FROM_ROWS = 2000
"""From this many rows deep, PostgreSQL reaches a page of the unfiltered sent listing through
the per-hour counts: summing them costs about what skipping this many index entries does."""


def _filter_values(where: MessageFilter) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if where.to is not None:
        values["to"] = where.to
    if where.since is not None:
        values["since"] = where.since
    if where.until is not None:
        values["until"] = where.until
    return values


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
        values = _filter_values(where)
        shape = {"to": "to" in values, "since": "since" in values, "until": "until" in values}
        counted = not values
        values["rows"] = limit + 1
        statement: Executable
        if after is not None:
            dated = after.at is not None
            statement = sent_statement(Way.AFTER, **shape, postgres=self._postgres, dated=dated)
            values["after_id"] = after.id
            if dated:
                values["after_at"] = after.at
        elif page > 1:
            values["skip"] = skip = (page - 1) * limit
            deep = self._postgres and counted and skip >= DEEP_FROM_ROWS
            statement = (
                SENT_BY_HOURS if deep else sent_statement(Way.OFFSET, **shape, postgres=self._postgres)
            )
        else:
            statement = sent_statement(Way.FIRST, **shape, postgres=self._postgres)
        return await self._page(
            statement,
            values,
            limit=limit,
            position_of=lambda message: Position(message.sent_at, message.id),
            counted=counted,
            status=Status.SUCCESS,
        )

    async def list_messages(
        self, *, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return live messages newest ``created_at`` first, after ``after`` when given."""
        where = where or _NO_FILTER
        if after is not None and after.at is None:
            raise ValueError("a position in the listing by created_at needs its created_at")
        values = _filter_values(where)
        counted = not values
        statement = messages_statement(
            where.status,
            to="to" in values,
            since="since" in values,
            until="until" in values,
            after=after is not None,
        )
        values["rows"] = limit + 1
        if after is not None:
            values["after_at"], values["after_id"] = after.at, after.id
        return await self._page(
            statement,
            values,
            limit=limit,
            position_of=lambda message: Position(message.created_at, message.id),
            counted=counted,
            status=where.status,
        )

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live messages are in each status, from the kept counts (zeros included)."""
        counts = dict.fromkeys(Status, 0)
        for row in await self._read(COUNTS_BY_STATUS, {}):
            status, count = row
            if status in Status.__members__:
                counts[Status(status)] = int(count)
        return counts

    async def _page(
        self,
        statement: Executable,
        values: dict[str, Any],
        *,
        limit: int,
        position_of: Callable[[Message], Position],
        counted: bool,
        status: Status | None,
    ) -> Page:
        """Run a listing statement: up to ``limit`` messages, whether more follow, and when
        ``counted`` the total of ``status`` (None: every status) its rows carry."""
        rows = await self._read(statement, values)
        items = [from_row(row) for row in rows[:limit]]
        following = position_of(items[-1]) if len(rows) > limit else None
        total: int | None = None
        if counted and rows:
            total = int(rows[0].total)
        elif counted:  # past the last page: no row carried the total
            total = int((await self._read(count_statement(status), {}))[0][0])
        return Page(items=items, total=total, next_after=following)

    async def _read(self, statement: Executable, values: dict[str, Any]) -> Sequence[Any]:
        """Run a read; once more on a fresh connection if the server had dropped this one."""
        try:
            async with self._reading() as connection:
                return (await connection.execute(statement, values)).all()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        async with self._reading() as connection:
            return (await connection.execute(statement, values)).all()

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads. On PostgreSQL in autocommit: a read needs no transaction
        (each statement has its own snapshot under READ COMMITTED anyway), which saves the
        BEGIN and ROLLBACK round trips."""
        async with self._engine.connect() as connection:
            if self._postgres:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection
