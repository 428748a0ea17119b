"""The ports the core needs. Adapters in ``adapters/`` implement them; fakes too.

Every method that takes or returns a time uses timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from sms_dispatch.domain import Message, NewMessage, SendResult, Status, Transition


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing and the total it was cut from."""

    items: list[Message]
    total: int


@dataclass(frozen=True, slots=True)
class SchedulerState:
    """The fleet-wide scheduler switch and the time of the last batch slot taken."""

    running: bool
    last_run_at: datetime | None
    updated_at: datetime | None


class MessageStore(Protocol):
    """Durable storage of messages: the source of truth."""

    async def create(self, message: NewMessage, *, now: datetime) -> Message:
        """Insert one PENDING message and return it."""
        ...

    async def get(self, message_id: UUID) -> Message | None:
        """Return the message with this id, or None (soft-deleted rows count as absent)."""
        ...

    async def claim_due(
        self, *, limit: int, now: datetime, lease_s: float, claim_token: str, claimed_by: str
    ) -> list[Message]:
        """Move up to ``limit`` due PENDING rows (oldest first) to SENDING under a lease.

        Due: status PENDING, not soft-deleted, next_attempt_at <= now. Each claimed row's
        ``attempts`` goes up by one, ``claim_token`` and ``lease_until = now + lease_s`` are
        set. One short transaction; concurrent callers never get the same row. Returns the
        rows as they are after the claim, oldest first.
        """
        ...

    async def finish(self, transitions: Sequence[Transition], *, now: datetime) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its claim token.

        Clears the lease and claim token, sets ``updated_at = now``. Returns the ids that
        were applied; the others (rescued or finished by someone else) are left untouched.
        """
        ...

    async def rescue_expired(self, *, now: datetime, max_attempts: int, retry_delay_s: float) -> int:
        """Return SENDING rows whose lease ended before ``now`` to PENDING, or FAILED when
        their attempts reached ``max_attempts``; return how many rows were changed."""
        ...

    async def list_sent(self, *, page: int, limit: int) -> Page:
        """Return SUCCESS messages, newest ``sent_at`` first (then id), page numbered from 1."""
        ...

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live (not soft-deleted) messages are in each status."""
        ...


class ControlStore(Protocol):
    """The fleet-wide scheduler state, shared by every instance on the database."""

    async def scheduler_state(self) -> SchedulerState:
        """Return the stored scheduler state (running on a new database)."""
        ...

    async def set_running(self, running: bool, *, now: datetime) -> SchedulerState:
        """Store the switch and return the new state."""
        ...

    async def take_batch_slot(self, *, now: datetime, interval_s: float) -> bool:
        """Take the next batch slot if the switch is on and ``interval_s`` has passed since the
        last one was taken; only one caller in the fleet gets each slot."""
        ...


class SentCache(Protocol):
    """A cache of provider message ids and their send time (Redis, or in-process)."""

    async def remember_sent(self, sent: Mapping[str, datetime], *, ttl_s: float) -> None:
        """Store ``sent_messages:<messageId>`` = send time (RFC 3339) for each entry."""
        ...

    async def sent_at(self, provider_message_id: str) -> str | None:
        """Return the cached send time for this provider id, or None."""
        ...

    async def ttl_s(self, provider_message_id: str) -> float | None:
        """Return the seconds left before the entry expires, or None if absent."""
        ...

    async def ping(self) -> bool:
        """Return True when the cache answers."""
        ...


class SmsProvider(Protocol):
    """The SMS provider's webhook."""

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Send one message and classify the answer; never raises for provider faults."""
        ...


class Clock(Protocol):
    """Where the time comes from (real or fake)."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Which messages a listing or a bulk action covers; None means any.

    ``since`` (inclusive) and ``until`` (exclusive) bound ``created_at``; the sent listing
    bounds ``sent_at`` instead.
    """

    status: Status | None = None
    to: str | None = None
    since: datetime | None = None
    until: datetime | None = None
