"""Shared helpers of the store contract: one suite run against every store (in-memory, SQLite, PostgreSQL).

The in-memory store is held to exactly what the SQL store does, so unit tests of the core that
use it cannot drift from production behaviour. Behaviour only SQL databases have (rows inserted
by other programs, several instances at once) runs on SQLite and PostgreSQL. The fixtures that
open each store are in ``conftest.py``; the ``test_store_*.py`` modules hold the contract itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import URL, make_url, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import messages
from sms_dispatch.domain import AttemptOutcome, AttemptRecord, Message, NewMessage, Status, Transition
from tests.conftest import FakeClock

LEASE_S = 30.0
LEASE_EXPIRED = "lease expired (worker stopped or crashed mid-send)"
POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres)


Store = SqlMessageStore | InMemoryMessageStore


@dataclass
class Subject:
    """A store under test and a way to soft-delete a row as the Go service does."""

    store: Store
    soft_delete: Callable[[UUID, datetime], Awaitable[None]]


def sqlite_url(path: Path) -> URL:
    """Return the async URL of a SQLite file."""
    return URL.create("sqlite+aiosqlite", database=str(path))


def async_pg_url(plain: str) -> URL:
    """Return the asyncpg URL of a plain ``postgresql://`` URL."""
    return make_url(plain).set(drivername="postgresql+asyncpg")


async def migrated_engine(url: URL) -> AsyncEngine:
    """Return an engine on ``url`` with the schema migrated."""
    engine = create_engine(url, pool_size=4)
    await migrate(engine)
    return engine


@asynccontextmanager
async def open_subject(url: URL | None) -> AsyncIterator[Subject]:
    """Open a fresh, empty store on ``url`` (in-memory when None)."""
    if url is None:
        fake = InMemoryMessageStore()

        async def forget(message_id: UUID, now: datetime) -> None:
            fake.soft_delete(message_id, now=now)

        yield Subject(fake, forget)
        return
    engine = await migrated_engine(url)

    async def soft_delete(message_id: UUID, now: datetime) -> None:
        # What the Go service's GORM soft delete does to a row.
        statement = update(messages).where(messages.c.id == message_id).values(deleted_at=now)
        async with engine.begin() as connection:
            await connection.execute(statement)

    try:
        yield Subject(SqlMessageStore(engine), soft_delete)
    finally:
        await engine.dispose()


async def add(store: Store, clock: FakeClock, count: int = 1, *, gap_s: float = 1.0) -> list[Message]:
    """Create ``count`` messages, ``gap_s`` apart on the clock; return them oldest first."""
    created = []
    for n in range(count):
        created.append(await store.create(NewMessage(f"+9055511{n:05d}", f"hello {n}"), now=clock.now()))
        clock.advance(gap_s)
    return created


async def claim(store: Store, clock: FakeClock, limit: int = 100, claimant: str = "token-a") -> list[Message]:
    """Claim due messages at the clock's time under the claim token ``claimant``."""
    return await store.claim_due(
        limit=limit, now=clock.now(), lease_s=LEASE_S, claim_token=claimant, claimed_by="worker-a"
    )


async def sent(store: Store, clock: FakeClock, count: int) -> list[Message]:
    """Create, claim and deliver ``count`` messages, one second apart; return them as stored."""
    await add(store, clock, count)
    transitions = []
    for message in await claim(store, clock):
        clock.advance(1)
        transitions.append(
            Transition(message.id, "token-a", Status.SUCCESS, f"p-{message.id}", sent_at=clock.now())
        )
    await store.finish(transitions, now=clock.now())
    return [m for m in [await store.get(t.id) for t in transitions] if m is not None]


async def stored(store: Store, message_id: UUID) -> Message:
    """Return the stored message, which must exist."""
    message = await store.get(message_id)
    assert message is not None
    return message


async def attempt_of(message: Message, clock: FakeClock) -> AttemptRecord:
    """Return a delivered attempt record of ``message`` at the clock's time."""
    return AttemptRecord(message.id, 1, clock.now(), 12.5, AttemptOutcome.DELIVERED, http_status=202)


def record(
    message: Message, outcome: AttemptOutcome = AttemptOutcome.DELIVERED, **extra: object
) -> AttemptRecord:
    """Return an attempt record of ``message``'s current attempt, with any field overridden."""
    fields: dict[str, object] = {
        "message_id": message.id,
        "attempt": message.attempts,
        "started_at": message.updated_at,
        "duration_ms": 12.5,
        "outcome": outcome,
        "instance": "worker-a",
    }
    return AttemptRecord(**{**fields, **extra})  # type: ignore[arg-type]


async def failed(store: Store, clock: FakeClock, count: int, *, to: str | None = None) -> list[Message]:
    """Create, claim and fail ``count`` messages one second apart; return them as stored."""
    created = []
    for n in range(count):
        created.append(await store.create(NewMessage(to or f"+9055522{n:05d}", f"dead {n}"), now=clock.now()))
        clock.advance(1)
    await claim(store, clock, claimant="token-f")
    fail = [Transition(m.id, "token-f", Status.FAILED, last_error="HTTP 400 bad number") for m in created]
    await store.finish(fail, now=clock.now())
    return [await stored(store, m.id) for m in created]
