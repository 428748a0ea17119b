"""The ports the core needs. Adapters in ``adapters/`` implement them; fakes too.

Every method that takes or returns a time uses timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol
from uuid import UUID

from sms_dispatch.domain import (
    AttemptRecord,
    Message,
    NewMessage,
    Outcome,
    SendResult,
    Status,
    Transition,
)
from sms_dispatch.port_types import InstanceInfo, MessageFilter, Page, Position, SchedulerState


class MessageStore(Protocol):
    """Durable storage of messages: the source of truth."""

    async def create(self, message: NewMessage, *, now: datetime) -> Message:
        """Insert one PENDING message and return it."""
        ...

    async def create_many(self, batch: Sequence[NewMessage], *, now: datetime) -> int:
        """Insert every message of ``batch`` as PENDING in one transaction; return how many were stored."""
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

    async def finish(
        self, transitions: Sequence[Transition], *, now: datetime, attempts: Sequence[AttemptRecord] = ()
    ) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its claim token.

        Clears the lease and claim token, sets ``updated_at = now``. Returns the ids that
        were applied; the others (rescued or finished by someone else) are left untouched.
        In the same transaction, records ``attempts`` (one bulk insert): every attempt whose
        message still exists, marked ``applied`` when its message's transition was applied.
        """
        ...

    async def rescue_expired(self, *, now: datetime, max_attempts: int, retry_delay_s: float) -> int:
        """Return SENDING rows whose lease ended before ``now`` to PENDING, or FAILED when
        their attempts reached ``max_attempts``; return how many rows were changed.

        Each rescued row gets a ``lease_expired`` attempt record (started at its claim, by its
        claimant). On PostgreSQL one instance rescues at a time; the others return 0.
        """
        ...

    async def history(self, message_id: UUID) -> list[AttemptRecord]:
        """Return the attempt records of a message in the order they were recorded."""
        ...

    async def create_idempotent(
        self, message: NewMessage, *, now: datetime, key: str
    ) -> tuple[Message, bool]:
        """Insert a PENDING message under ``key`` unless one exists; return it and whether it is new.

        The database's unique index decides: concurrent calls with one key make one row. The
        message already stored under ``key`` is returned as it is (soft-deleted ones too).
        """
        ...

    async def retry(self, message_id: UUID, *, now: datetime) -> Message | None:
        """Return a live FAILED or CANCELLED message to PENDING, due ``now``, attempts 0.

        Keeps ``last_error``. Returns the message after the change, or None when no live row
        with this id is FAILED or CANCELLED (the change is guarded by the status).
        """
        ...

    async def retry_batch(
        self, matching: MessageFilter, *, now: datetime, after: UUID | None, limit: int
    ) -> list[UUID]:
        """Retry (as ``retry``) up to ``limit`` live messages that match, in id order after ``after``.

        ``matching.status`` must be FAILED or CANCELLED. One short transaction; returns the ids
        changed, ascending, so the caller can go on after the last one.
        """
        ...

    async def cancel(self, message_id: UUID, *, now: datetime) -> Message | None:
        """Move a live PENDING message to CANCELLED; return it after the change, or None if
        no live row with this id is PENDING (the change is guarded by the status)."""
        ...

    async def list_sent(
        self,
        *,
        limit: int,
        page: int = 1,
        after: Position | None = None,
        where: MessageFilter | None = None,
    ) -> Page:
        """Return live SUCCESS messages, newest ``sent_at`` first (then id), at most ``limit``.

        After ``after`` when given (keyset; ``page`` is ignored), else page ``page`` from 1
        (offset). ``where`` filters by ``to`` and ``since``/``until`` on ``sent_at``; its status
        must be None or SUCCESS. ``total``: every live SUCCESS message when ``where`` sets no
        filter, else None. Never loads more than ``limit`` rows.
        """
        ...

    async def list_messages(
        self, *, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return live messages, newest ``created_at`` first (then id), at most ``limit``.

        After ``after`` when given (keyset). ``where`` filters by status, ``to`` and
        ``since``/``until`` on ``created_at``. ``total``: the status's count when ``where`` sets
        at most a status, else None. Never loads more than ``limit`` rows.
        """
        ...

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live (not soft-deleted) messages are in each status."""
        ...

    async def count_sent_since(self, since: datetime) -> int:
        """Return how many live SUCCESS messages have ``sent_at >= since`` (served by the sent index)."""
        ...

    async def oldest_due_at(self, now: datetime) -> datetime | None:
        """Return when the oldest live PENDING message due at ``now`` became due, or None (the due index)."""
        ...

    async def prune_sent(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` live SUCCESS messages sent before ``before``, oldest first, with their
        attempt history, in one short transaction; return how many were deleted."""
        ...

    async def prune_failed(self, *, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` live FAILED or CANCELLED messages last updated before ``before``,
        oldest first, with their attempt history, in one short transaction; return how many."""
        ...

    async def ping(self) -> bool:
        """Return True when the database answers."""
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

    async def take_send_budget(self, want: int, *, now: datetime, rate_per_s: float, burst_s: float) -> int:
        """Take up to ``want`` sends from the fleet-wide budget of ``rate_per_s`` (``pacing.py``);
        return how many were granted, 0 when the budget is spent."""
        ...

    async def return_send_budget(self, count: int, *, now: datetime, rate_per_s: float) -> None:
        """Give ``count`` granted but unused sends back to the fleet-wide budget."""
        ...

    async def heartbeat(self, instance: InstanceInfo) -> None:
        """Insert or update the instance's row (by name) with its ``last_heartbeat_at``."""
        ...

    async def remove_instance(self, name: str) -> None:
        """Delete the instance's row, if any (a clean shutdown)."""
        ...

    async def live_instances(self, *, seen_since: datetime) -> list[InstanceInfo]:
        """Return the instances whose last heartbeat is at or after ``seen_since``, by name."""
        ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Hold the fleet-wide lock ``name`` while inside; yield False (and hold nothing) when
        another holder has it. A PostgreSQL advisory lock; in-process on SQLite and in memory."""
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


class DeliveryObserver(Protocol):
    """What the core reports while it delivers: metrics listen, ``NullDeliveryObserver`` ignores it.

    Called on the event loop in the middle of delivery: implementations must not block or raise.
    Totals (retries, rescues, cache-write failures) are read from ``Deliverer.counters`` instead.
    """

    def send_finished(self, *, outcome: Outcome, http_status: int | None, duration_s: float) -> None:
        """Note one provider call: how it ended, its HTTP status (None without an answer), its time."""
        ...

    def batch_finished(self, *, size: int, duration_s: float) -> None:
        """Note one scheduled batch that claimed ``size`` messages and took ``duration_s``."""
        ...


SWITCH_CHANGED = "switch"
"""The ``NewMessageSignal`` payload saying the fleet-wide switch changed."""


class NewMessageSignal(Protocol):
    """Tells the continuous dispatcher at once that new messages may be due (PostgreSQL NOTIFY).

    A hint, never the truth: the dispatcher still polls, more slowly while ``listening``.
    """

    @property
    def listening(self) -> bool:
        """Return True while notifications are being received (the listener is connected)."""
        ...

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` (on the event loop, without awaiting) at every notification, with
        its payload: ``""`` for new messages, ``"switch"`` when the fleet-wide switch changed
        (also given after a reconnect, when anything may have changed)."""
        ...


class Clock(Protocol):
    """Where the time comes from (real or fake)."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


__all__ = [
    "Clock",
    "ControlStore",
    "DeliveryObserver",
    "InstanceInfo",
    "MessageFilter",
    "MessageStore",
    "NewMessageSignal",
    "Page",
    "Position",
    "SchedulerState",
    "SentCache",
    "SmsProvider",
]
