"""The upkeep side of ``InMemoryMessageStore``: lag, retention, ping and fleet locks.

Same contract as ``SqlUpkeep``, no I/O; every method runs without awaiting in between, so
each is atomic. Pruning a message drops its attempt history and its idempotency key with it,
as the database's ``ON DELETE CASCADE`` and row deletion do.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from sms_dispatch.domain import AttemptRecord, Message, Status

if TYPE_CHECKING:
    from sms_dispatch.adapters.memory_store import _Row

_FAILED_OR_CANCELLED = (Status.FAILED, Status.CANCELLED)


class InMemoryUpkeep:
    """The upkeep methods of ``InMemoryMessageStore``."""

    _rows: dict[UUID, _Row]
    _attempts: list[AttemptRecord]
    _keys: dict[str, UUID]
    _held_locks: set[str]

    async def oldest_due_at(self, now: datetime) -> datetime | None:
        """Return the due time of the oldest live PENDING message due at ``now``, or None."""
        due = [
            row.message.next_attempt_at or row.message.created_at
            for row in self._rows.values()
            if row.live and row.message.status is Status.PENDING
        ]
        return min((at for at in due if at <= now), default=None)

    async def prune_sent(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` live SUCCESS messages sent before ``before``, oldest first."""

        def old(m: Message) -> bool:
            return m.status is Status.SUCCESS and m.sent_at is not None and m.sent_at < before

        return self._delete_oldest(old, lambda m: (m.sent_at, m.id), limit)

    async def prune_failed(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` live FAILED or CANCELLED messages last updated before ``before``."""

        def old(m: Message) -> bool:
            return m.status in _FAILED_OR_CANCELLED and m.updated_at < before

        return self._delete_oldest(old, lambda m: (m.updated_at, m.id), limit)

    def _delete_oldest(
        self, old: Callable[[Message], bool], age: Callable[[Message], tuple[object, UUID]], limit: int
    ) -> int:
        chosen = sorted((r.message for r in self._rows.values() if r.live and old(r.message)), key=age)
        gone = {m.id for m in chosen[: max(limit, 0)]}
        for message_id in gone:
            del self._rows[message_id]
        self._attempts[:] = [a for a in self._attempts if a.message_id not in gone]
        for key in [k for k, message_id in self._keys.items() if message_id in gone]:
            del self._keys[key]
        return len(gone)

    async def ping(self) -> bool:
        """Return True: memory always answers."""
        return True

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Hold the lock ``name`` while inside; yield False when it is already held."""
        if name in self._held_locks:
            yield False
            return
        self._held_locks.add(name)
        try:
            yield True
        finally:
            self._held_locks.discard(name)
