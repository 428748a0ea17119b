"""An in-memory ``MessageStore`` and ``ControlStore`` for unit tests of the core.

It keeps the same promises as ``SqlMessageStore`` (the contract suite runs against both) but
does no I/O. Every method runs without awaiting, so on one event loop each is atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from sms_dispatch import pacing
from sms_dispatch.adapters.memory_listing import InMemoryListing
from sms_dispatch.adapters.memory_operations import InMemoryOperations
from sms_dispatch.adapters.memory_upkeep import InMemoryUpkeep
from sms_dispatch.domain import (
    AttemptRecord,
    Message,
    NewMessage,
    Status,
    Transition,
    kept_text,
    lease_expired_attempt,
)
from sms_dispatch.ports import InstanceInfo, SchedulerState

LEASE_EXPIRED = "lease expired (worker stopped or crashed mid-send)"


@dataclass(slots=True)
class _Row:
    """A stored message plus the columns ``Message`` does not show."""

    message: Message
    claimed_by: str | None = None
    deleted_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.deleted_at is None


class InMemoryMessageStore(InMemoryOperations, InMemoryUpkeep, InMemoryListing):
    """``MessageStore`` and ``ControlStore`` held in a dict: SQL store semantics, no I/O.

    The operator actions, idempotent creation, attempt history and instance list are in
    ``InMemoryOperations`` (``memory_operations.py``); lag, retention, ping and locks in
    ``InMemoryUpkeep`` (``memory_upkeep.py``); the listings and counts in ``InMemoryListing``
    (``memory_listing.py``).
    """

    def __init__(self) -> None:
        self._rows: dict[UUID, _Row] = {}
        self._state = SchedulerState(running=True, last_run_at=None, updated_at=None)
        self._paced_until: datetime | None = None
        self._attempts: list[AttemptRecord] = []
        self._instances: dict[str, InstanceInfo] = {}
        self._keys: dict[str, UUID] = {}
        self._held_locks: set[str] = set()

    async def create(self, message: NewMessage, *, now: datetime) -> Message:
        """Insert one PENDING message and return it."""
        stored = Message(
            id=uuid4(),
            to=message.to,
            content=message.content,
            status=Status.PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
            next_attempt_at=now,
            validated=True,
        )
        self._rows[stored.id] = _Row(stored)
        return stored

    async def create_many(self, batch: Sequence[NewMessage], *, now: datetime) -> int:
        """Insert every message of ``batch`` as PENDING; return how many were stored."""
        for message in batch:
            await self.create(message, now=now)
        return len(batch)

    def insert_by_hand(self, to: str, content: str, *, now: datetime) -> Message:
        """What another program's plain SQL insert does: a PENDING row nobody checked yet."""
        stored = Message(
            id=uuid4(), to=to, content=content, status=Status.PENDING, attempts=0,
            created_at=now, updated_at=now, next_attempt_at=now,
        )  # fmt: skip
        self._rows[stored.id] = _Row(stored)
        return stored

    async def get(self, message_id: UUID) -> Message | None:
        """Return the live message with this id, or None."""
        row = self._rows.get(message_id)
        return row.message if row is not None and row.live else None

    async def claim_due(
        self, *, limit: int, now: datetime, lease_s: float, claim_token: str, claimed_by: str
    ) -> list[Message]:
        """Move up to ``limit`` due rows to SENDING under a lease; oldest first."""
        due = sorted(
            (
                row
                for row in self._rows.values()
                if row.live and row.message.status is Status.PENDING and _due_time(row.message) <= now
            ),
            key=lambda row: (_due_time(row.message), row.message.id),
        )[: max(limit, 0)]
        claimed = []
        for row in due:
            row.message = replace(
                row.message,
                status=Status.SENDING,
                attempts=row.message.attempts + 1,
                claim_token=claim_token,
                lease_until=now + timedelta(seconds=lease_s),
                updated_at=now,
            )
            row.claimed_by = claimed_by
            claimed.append(row.message)
        return claimed

    async def finish(
        self, transitions: Sequence[Transition], *, now: datetime, attempts: Sequence[AttemptRecord] = ()
    ) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its token; return applied ids.

        The attempt records of existing messages are kept, marked applied or not.
        """
        applied: set[UUID] = set()
        for t in transitions:
            row = self._rows.get(t.id)
            if row is None or row.message.status is not Status.SENDING:
                continue
            if row.message.claim_token != t.claim_token:
                continue
            row.message = _finished(row.message, t, now)
            row.claimed_by = None
            applied.add(t.id)
        self._record_attempts(list(attempts), applied)
        return applied

    async def rescue_expired(self, *, now: datetime, max_attempts: int, retry_delay_s: float) -> int:
        """Return SENDING rows whose lease ended to PENDING (or FAILED when out of attempts)."""
        rescued = 0
        for row in self._rows.values():
            lease_until = row.message.lease_until
            if row.message.status is not Status.SENDING or lease_until is None:
                continue
            if lease_until >= now:
                continue
            exhausted = row.message.attempts >= max_attempts
            self._attempts.append(
                lease_expired_attempt(
                    row.message.id,
                    attempt=row.message.attempts,
                    claimed_at=row.message.updated_at,
                    claimed_by=row.claimed_by,
                    now=now,
                    error=LEASE_EXPIRED,
                )
            )
            row.message = replace(
                row.message,
                status=Status.FAILED if exhausted else Status.PENDING,
                next_attempt_at=(
                    row.message.next_attempt_at if exhausted else now + timedelta(seconds=retry_delay_s)
                ),
                last_error=LEASE_EXPIRED,
                lease_until=None,
                claim_token=None,
                updated_at=now,
            )
            row.claimed_by = None
            rescued += 1
        return rescued

    async def count_sent_since(self, since: datetime) -> int:
        """Return how many live SUCCESS messages were sent at or after ``since``."""
        return sum(
            1
            for row in self._rows.values()
            if row.live
            and row.message.status is Status.SUCCESS
            and row.message.sent_at is not None
            and row.message.sent_at >= since
        )

    async def scheduler_state(self) -> SchedulerState:
        """Return the scheduler switch (running until set)."""
        return self._state

    async def set_running(self, running: bool, *, now: datetime) -> SchedulerState:
        """Store the scheduler switch and return the new state."""
        self._state = replace(self._state, running=running, updated_at=now)
        return self._state

    async def take_batch_slot(self, *, now: datetime, interval_s: float) -> bool:
        """Take the next batch slot if running and ``interval_s`` has passed; True if taken."""
        last = self._state.last_run_at
        if not self._state.running:
            return False
        if interval_s > 0 and last is not None and last > now - timedelta(seconds=interval_s):
            return False
        self._state = replace(self._state, last_run_at=now)
        return True

    async def take_send_budget(self, want: int, *, now: datetime, rate_per_s: float, burst_s: float) -> int:
        """Take up to ``want`` sends from the budget of ``rate_per_s``; return how many were granted."""
        decision = pacing.take(self._paced_until, want=want, now=now, rate_per_s=rate_per_s, burst_s=burst_s)
        self._paced_until = decision.paced_until
        return decision.granted

    async def return_send_budget(self, count: int, *, now: datetime, rate_per_s: float) -> None:
        """Give ``count`` granted but unused sends back to the budget."""
        self._paced_until = pacing.give_back(self._paced_until, count=count, now=now, rate_per_s=rate_per_s)

    def all(self) -> list[Message]:
        """Return every live message, oldest first (a seam for tests)."""
        live = [row.message for row in self._rows.values() if row.live]
        return sorted(live, key=lambda m: (m.created_at, m.id))

    def soft_delete(self, message_id: UUID, *, now: datetime) -> None:
        """Mark a message deleted, as the Go service's soft delete does (a seam for tests)."""
        self._rows[message_id].deleted_at = now


def _finished(message: Message, t: Transition, now: datetime) -> Message:
    """Return ``message`` after transition ``t``; a refund undoes the attempt and keeps the rest."""
    released = replace(message, status=t.status, lease_until=None, claim_token=None, updated_at=now)
    if t.refund_attempt:
        return replace(
            released,
            attempts=max(message.attempts - 1, 0),
            next_attempt_at=t.next_attempt_at or message.next_attempt_at,
        )
    retry_now = now if t.status is Status.PENDING else message.next_attempt_at
    return replace(
        released,
        message_id=kept_text(t.message_id),
        raw_response=kept_text(t.raw_response),
        last_error=kept_text(t.last_error),
        sent_at=t.sent_at,
        next_attempt_at=t.next_attempt_at or retry_now,
    )


def _due_time(message: Message) -> datetime:
    return message.next_attempt_at or message.created_at
