"""Shared helpers of the listing contract: keyset and offset pages, filters, and exact counts.

The listing modules run against every store (in-memory, SQLite, PostgreSQL) with the fixtures of
the store contract (``conftest.py``). What only SQL databases have (rows written by other programs
with plain SQL, the counting triggers and their folding, several writers at once) runs on SQLite
and PostgreSQL; the plain-SQL statements those tests run as another program would are here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.domain import Message, Status, Transition
from sms_dispatch.ports import MessageFilter
from tests.conftest import FakeClock
from tests.contract.store_helpers import Store, add, claim, stored

ALL_ZERO = dict.fromkeys(Status, 0)


def ids(messages: list[Message]) -> list[UUID]:
    """Return the ids of ``messages`` in order."""
    return [m.id for m in messages]


def newest_sent_first(messages: list[Message]) -> list[UUID]:
    """Return the ids of sent messages, newest ``sent_at`` first (then the larger id)."""
    return [m.id for m in sorted(messages, key=lambda m: (m.sent_at, m.id), reverse=True)]


def newest_created_first(messages: list[Message]) -> list[UUID]:
    """Return the ids of messages, newest ``created_at`` first (then the larger id)."""
    return [m.id for m in sorted(messages, key=lambda m: (m.created_at, m.id), reverse=True)]


async def walk_sent(store: Store, *, limit: int, where: MessageFilter | None = None) -> list[UUID]:
    """Return the ids of the whole sent listing, read page after page by keyset."""
    walked: list[UUID] = []
    page = await store.list_sent(limit=limit, where=where)
    walked.extend(ids(page.items))
    while page.next_after is not None:
        page = await store.list_sent(limit=limit, after=page.next_after, where=where)
        walked.extend(ids(page.items))
    return walked


async def walk_messages(store: Store, *, limit: int, where: MessageFilter | None = None) -> list[UUID]:
    """Return the ids of the whole message listing, read page after page by keyset."""
    walked: list[UUID] = []
    page = await store.list_messages(limit=limit, where=where)
    walked.extend(ids(page.items))
    while page.next_after is not None:
        page = await store.list_messages(limit=limit, after=page.next_after, where=where)
        walked.extend(ids(page.items))
    return walked


def counts(**by_status: int) -> Mapping[Status, int]:
    """Return every status's count: the given ones, zero for the rest."""
    return ALL_ZERO | {Status(name): n for name, n in by_status.items()}


async def fail(store: Store, clock: FakeClock, count: int) -> list[Message]:
    """Create, claim and fail ``count`` messages (dead letters); return them as stored."""
    created = await add(store, clock, count)
    claimed = await claim(store, clock, limit=count)
    failures = [Transition(m.id, "token-a", Status.FAILED, last_error="403") for m in claimed]
    await store.finish(failures, now=clock.now())
    return [await stored(store, m.id) for m in created]


async def sql(engine: AsyncEngine, statement: str) -> None:
    """Run one plain-SQL statement in its own transaction, as another program would."""
    async with engine.begin() as connection:
        await connection.execute(text(statement))


async def recount(engine: AsyncEngine) -> Mapping[Status, int]:
    """Return the counts by status the slow way: counting the live rows of ``messages``."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT status, count(*) FROM messages WHERE deleted_at IS NULL GROUP BY status")
        )
        return ALL_ZERO | {Status(status): n for status, n in rows}


async def delta_rows(engine: AsyncEngine) -> int:
    """Return how many count deltas wait to be folded in."""
    async with engine.connect() as connection:
        found: int = await connection.scalar(text("SELECT count(*) FROM message_count_deltas"))
    return found


HAND_INSERT = """INSERT INTO messages ("to", content) VALUES ('+905551111111', 'by hand')"""
SOFT_DELETE_ONE_SUCCESS = (
    "UPDATE messages SET deleted_at = created_at WHERE id ="
    " (SELECT id FROM messages WHERE status = 'SUCCESS' AND deleted_at IS NULL LIMIT 1)"
)
DELETE_ONE_SUCCESS = (
    "DELETE FROM messages WHERE id ="
    " (SELECT id FROM messages WHERE status = 'SUCCESS' AND deleted_at IS NULL LIMIT 1)"
)
SEND_ONE_PENDING = (
    "UPDATE messages SET status = 'SUCCESS' WHERE id ="
    " (SELECT id FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL LIMIT 1)"
)
SOFT_DELETE_ONE_PENDING = (
    "UPDATE messages SET deleted_at = created_at WHERE id ="
    " (SELECT id FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL LIMIT 1)"
)
