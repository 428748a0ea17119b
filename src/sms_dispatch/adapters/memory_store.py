"""An in-memory ``MessageStore`` and ``ControlStore`` for unit tests of the core.

It keeps the same promises as ``SqlMessageStore`` (the contract suite runs against both) but
does no I/O. Every method runs without awaiting, so on one event loop each is atomic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sms_dispatch.domain import Message, NewMessage, Status, Transition
from sms_dispatch.ports import Page, SchedulerState

LEASE_EXPIRED = "lease expired (worker stopped or crashed mid-send)"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Row:
    """A stored message plus the columns ``Message`` does not show."""

    message: Message
    claimed_by: str | None = None
    deleted_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.deleted_at is None


class InMemoryMessageStore:
    """``MessageStore`` and ``ControlStore`` held in a dict: SQL store semantics, no I/O."""

    def __init__(self) -> None:
        self._rows: dict[UUID, _Row] = {}
        self._state = SchedulerState(running=True, last_run_at=None, updated_at=None)

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
        )
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

    async def finish(self, transitions: Sequence[Transition], *, now: datetime) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its token; return applied ids."""
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

    async def list_sent(self, *, page: int, limit: int) -> Page:
        """Return one page of live SUCCESS messages, newest ``sent_at`` first, and their total."""
        sent = [
            row.message for row in self._rows.values() if row.live and row.message.status is Status.SUCCESS
        ]
        # Descending, with a missing sent_at first, as PostgreSQL orders `sent_at DESC`.
        sent.sort(key=lambda m: (m.sent_at is None, m.sent_at or _EPOCH, m.id), reverse=True)
        start = (page - 1) * limit
        return Page(items=sent[start : start + limit], total=len(sent))

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live messages are in each status (every status, zero included)."""
        counts = dict.fromkeys(Status, 0)
        for row in self._rows.values():
            if row.live:
                counts[row.message.status] += 1
        return counts

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
        message_id=t.message_id,
        raw_response=t.raw_response,
        last_error=t.last_error,
        sent_at=t.sent_at,
        next_attempt_at=t.next_attempt_at or retry_now,
    )


def _due_time(message: Message) -> datetime:
    return message.next_attempt_at or message.created_at
