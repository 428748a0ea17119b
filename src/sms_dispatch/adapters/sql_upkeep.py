"""The store's upkeep side on SQLAlchemy Core: the queue's lag, retention, readiness, fleet locks.

``SqlUpkeep`` is a part of ``SqlMessageStore`` kept in its own module. Retention deletes in
small batches, each its own short transaction, oldest rows first through a partial index;
``message_attempts`` rows go with their message (``ON DELETE CASCADE``, which SQLite honours
because every connection turns ``foreign_keys`` on).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.tables import FAILED_OR_CANCELLED, PENDING, SUCCESS, messages
from sms_dispatch.logs import get_logger

log = get_logger(__name__)

_m = messages
_live = _m.c.deleted_at.is_(None)
_LOCK_NAMESPACE = b"sms-dispatch:"


def advisory_lock_key(name: str) -> int:
    """Return the PostgreSQL advisory lock id (a signed 64-bit number) of the fleet lock ``name``."""
    digest = hashlib.blake2b(_LOCK_NAMESPACE + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SqlUpkeep:
    """The upkeep methods of ``SqlMessageStore``: lag, retention, ping and fleet-wide locks."""

    _engine: AsyncEngine
    _postgres: bool
    _held_locks: set[str]

    async def oldest_due_at(self, now: datetime) -> datetime | None:
        """Return the due time of the oldest live PENDING message due at ``now`` (one due-index probe)."""
        statement = (
            select(_m.c.next_attempt_at)
            .where(_m.c.status == PENDING, _live, _m.c.next_attempt_at <= now)
            .order_by(_m.c.next_attempt_at)
            .limit(1)
        )
        async with self._engine.connect() as connection:
            found: datetime | None = (await connection.execute(statement)).scalar_one_or_none()
        return found

    async def prune_sent(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` live SUCCESS messages sent before ``before``, oldest first."""
        oldest = (
            select(_m.c.id)
            .where(_m.c.status == SUCCESS, _live, _m.c.sent_at < before)
            .order_by(_m.c.sent_at, _m.c.id)  # the sent index, read backwards
        )
        return await self._delete_oldest(oldest, limit)

    async def prune_failed(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` live FAILED or CANCELLED messages last updated before ``before``."""
        oldest = (
            select(_m.c.id)
            .where(FAILED_OR_CANCELLED, _live, _m.c.updated_at < before)
            .order_by(_m.c.updated_at)
        )
        return await self._delete_oldest(oldest, limit)

    async def _delete_oldest(self, oldest: Select[Any], limit: int) -> int:
        """Delete the first ``limit`` rows ``oldest`` selects, in one short transaction."""
        if limit <= 0:
            return 0
        chosen = oldest.limit(limit)
        where: ColumnElement[bool]
        if self._postgres:
            # Rows someone else holds (an operator's retry) are skipped, never waited for.
            locked = chosen.with_for_update(skip_locked=True).scalar_subquery()
            where = _m.c.id == any_(func.array(locked))
        else:
            where = _m.c.id.in_(chosen)
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(_m).where(where))
        return result.rowcount

    async def ping(self) -> bool:
        """Return True when the database answers ``SELECT 1``."""
        try:
            async with self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to answer means "not ready", whatever the driver says
            # DEBUG: readiness probes come every few seconds; the API logs the outage once.
            log.debug("database ping failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Hold the fleet-wide lock ``name`` while inside; yield False when another holder has it.

        PostgreSQL: a session advisory lock on a connection kept for the duration (if the process
        dies, the lock goes with its connection). SQLite serves one instance: an in-process lock.
        """
        if not self._postgres:
            async with _in_process_lock(self._held_locks, name) as held:
                yield held
            return
        key = advisory_lock_key(name)
        async with self._engine.connect() as connection:
            held = bool(await connection.scalar(select(func.pg_try_advisory_lock(key))))
            await connection.commit()  # hold the lock, not a transaction (no snapshot kept open)
            try:
                yield held
            finally:
                if held:
                    await _unlock(connection, key)


async def _unlock(connection: Any, key: int) -> None:
    try:
        await connection.scalar(select(func.pg_advisory_unlock(key)))
        await connection.commit()
    except Exception:
        # A lock left on a pooled connection would outlive us: drop the connection instead.
        await connection.invalidate()
        raise


@contextlib.asynccontextmanager
async def _in_process_lock(held_locks: set[str], name: str) -> AsyncIterator[bool]:
    """Yield True and hold ``name`` in ``held_locks``, or yield False when it is already held."""
    if name in held_locks:
        yield False
        return
    held_locks.add(name)
    try:
        yield True
    finally:
        held_locks.discard(name)


__all__ = ["SqlUpkeep", "advisory_lock_key"]
