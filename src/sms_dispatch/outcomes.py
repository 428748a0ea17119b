"""What a send's answer means for its message (next state, attempt record, refund), and the
tallies of a batch. Pure functions and plain data: no I/O, no clock of their own, no logging.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sms_dispatch.cache_writer import CacheWriteCounters
from sms_dispatch.domain import (
    MESSAGE_MAX_LENGTH_DEFAULT,
    AttemptOutcome,
    AttemptRecord,
    Message,
    Outcome,
    RecipientCheck,
    SendResult,
    Status,
    Transition,
    backoff_delay_s,
    excerpt,
)

Sent = tuple[Transition, AttemptRecord | None]
"""A finished send (or a claim handed back unsent: no attempt record) waiting to be recorded."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How a batch is claimed, sent and retried."""

    batch_size: int = 2
    max_workers: int = 2
    per_message_timeout_s: float = 5.0
    batch_timeout_s: float = 10.0
    lease_s: float = 45.0
    max_attempts: int = 5
    retry_base_s: float = 10.0
    retry_max_delay_s: float = 600.0
    max_length: int = MESSAGE_MAX_LENGTH_DEFAULT
    recipient_check: RecipientCheck = RecipientCheck.POSSIBLE
    cache_ttl_s: float = 86400.0
    record_window_s: float = 0.05
    """The longest a finished send waits for others before its group is recorded."""


@dataclass(slots=True)
class BatchReport:
    """What one batch did."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    handed_back: int = 0
    rescued: int = 0
    lost_race: int = 0
    duration_s: float = 0.0
    sent_ids: list[uuid.UUID] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        """Add ``other``'s tallies (a recorded group's) to these."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sent_ids.extend(other.sent_ids)

    def take(self) -> BatchReport:
        """Return a copy of the tallies and start these from zero (a summary period ends)."""
        taken = replace(self, sent_ids=self.sent_ids)
        for name in _COUNTS:
            setattr(self, name, 0)
        self.duration_s = 0.0
        self.sent_ids = []
        return taken


_COUNTS = ("claimed", "delivered", "retried", "failed", "handed_back", "rescued", "lost_race")


@dataclass(slots=True)
class DeliveryCounters:
    """Totals since start, for status and metrics."""

    batches: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    rescued: int = 0
    cache: CacheWriteCounters = field(default_factory=CacheWriteCounters)

    def add(self, group: BatchReport) -> None:
        """Count a recorded group's results into the totals."""
        self.delivered += group.delivered
        self.retried += group.retried
        self.failed += group.failed

    @property
    def cache_write_failures(self) -> int:
        """Entries whose cache write failed (they wait in the backlog)."""
        return self.cache.failed


def tally(transitions: Sequence[Transition], applied: set[uuid.UUID]) -> BatchReport:
    """Return what one recorded group did: ``applied`` holds the ids whose transition was applied."""
    group = BatchReport()
    for t in transitions:
        if t.id not in applied:
            group.lost_race += 1
        elif t.refund_attempt:
            group.handed_back += 1
        elif t.status is Status.SUCCESS:
            group.delivered += 1
            group.sent_ids.append(t.id)
        elif t.status is Status.PENDING:
            group.retried += 1
        else:
            group.failed += 1
    return group


def transition_for(
    message: Message, token: str, result: SendResult, policy: DeliveryPolicy, *, now: datetime
) -> Transition:
    """Return the guarded state change an answer calls for: SUCCESS, a retry later, or FAILED."""
    if result.outcome is Outcome.DELIVERED:
        return Transition(
            id=message.id,
            claim_token=token,
            status=Status.SUCCESS,
            message_id=result.provider_message_id,
            raw_response=result.raw_response,
            sent_at=now,
        )
    if result.outcome is Outcome.RETRYABLE and message.attempts < policy.max_attempts:
        delay_s = backoff_delay_s(
            message.attempts,
            base_s=policy.retry_base_s,
            max_delay_s=policy.retry_max_delay_s,
            retry_after_s=result.retry_after_s,
        )
        return Transition(
            id=message.id,
            claim_token=token,
            status=Status.PENDING,
            raw_response=result.raw_response,
            last_error=result.error,
            next_attempt_at=now + timedelta(seconds=delay_s),
        )
    error = result.error or "provider refused the message"
    if result.outcome is Outcome.RETRYABLE:
        error = f"gave up after {message.attempts} attempts: {error}"
    return Transition(
        id=message.id,
        claim_token=token,
        status=Status.FAILED,
        raw_response=result.raw_response,
        last_error=error,
    )


def attempt_record(
    message: Message,
    started_at: datetime,
    duration_ms: float,
    outcome: AttemptOutcome,
    result: SendResult | None,
    *,
    reason: str | None,
    instance: str,
) -> AttemptRecord:
    """Return the record of one attempt: the provider's answer, or why it was not sent."""
    return AttemptRecord(
        message_id=message.id,
        attempt=message.attempts,
        started_at=started_at,
        duration_ms=duration_ms,
        outcome=outcome,
        http_status=result.http_status if result else None,
        error_class=result.error_class if result else "invalid",
        error=result.error if result else reason,
        response_excerpt=excerpt(result.raw_response) if result else None,
        instance=instance,
    )


def refund(message: Message, token: str) -> Sent:
    """Hand back a claim that was never sent: its attempt is undone, and it is no attempt (no record)."""
    return Transition(id=message.id, claim_token=token, status=Status.PENDING, refund_attempt=True), None
