"""The operator side of ``InMemoryMessageStore``: idempotent creation, attempt history, retry and
cancel guarded by the current status, and the fleet's instance list. Same contract as
``SqlOperations``, no I/O; every method runs without awaiting in between, so each is atomic.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from sms_dispatch.domain import AttemptRecord, Message, NewMessage, Status, kept_text
from sms_dispatch.ports import InstanceInfo, MessageFilter

if TYPE_CHECKING:
    from sms_dispatch.adapters.memory_store import _Row

_RETRYABLE = (Status.FAILED, Status.CANCELLED)


class InMemoryOperations:
    """The operator-facing methods of ``InMemoryMessageStore``."""

    _rows: dict[UUID, _Row]
    _attempts: list[AttemptRecord]
    _instances: dict[str, InstanceInfo]
    _keys: dict[str, UUID]

    if TYPE_CHECKING:

        async def create(self, message: NewMessage, *, now: datetime) -> Message: ...

    async def create_idempotent(
        self, message: NewMessage, *, now: datetime, key: str
    ) -> tuple[Message, bool]:
        """Insert a PENDING message under ``key`` unless one exists; return it and whether it is new."""
        existing = self._keys.get(key)
        if existing is not None and existing in self._rows:  # a pruned message frees its key
            return self._rows[existing].message, False
        created = replace(await self.create(message, now=now), idempotency_key=key)
        self._rows[created.id].message = created
        self._keys[key] = created.id
        return created, True

    async def history(self, message_id: UUID) -> list[AttemptRecord]:
        """Return the message's attempt records in the order they were recorded."""
        return [a for a in self._attempts if a.message_id == message_id]

    async def retry(self, message_id: UUID, *, now: datetime) -> Message | None:
        """Return a live FAILED or CANCELLED message to PENDING, due now, attempts 0."""
        row = self._rows.get(message_id)
        if row is None or not row.live or row.message.status not in _RETRYABLE:
            return None
        row.message = _replayed(row.message, now)
        return row.message

    async def retry_batch(
        self, matching: MessageFilter, *, now: datetime, after: UUID | None, limit: int
    ) -> list[UUID]:
        """Retry up to ``limit`` matching live FAILED/CANCELLED messages after ``after``, by id."""
        status = matching.status or Status.FAILED
        if status not in _RETRYABLE:
            raise ValueError(f"only FAILED or CANCELLED messages can be retried, not {status.value}")
        chosen = sorted(
            row.message.id
            for row in self._rows.values()
            if row.live
            and row.message.status is status
            and (after is None or row.message.id > after)
            and _matches(row.message, matching)
            and (
                matching.error_class is None or self._last_error_class(row.message.id) == matching.error_class
            )
        )[: max(limit, 0)]
        for message_id in chosen:
            row = self._rows[message_id]
            row.message = _replayed(row.message, now)
        return chosen

    async def cancel(self, message_id: UUID, *, now: datetime) -> Message | None:
        """Move a live PENDING message to CANCELLED; None if it is not PENDING."""
        row = self._rows.get(message_id)
        if row is None or not row.live or row.message.status is not Status.PENDING:
            return None
        row.message = replace(row.message, status=Status.CANCELLED, updated_at=now)
        return row.message

    async def heartbeat(self, instance: InstanceInfo) -> None:
        """Insert or update the instance's row by name."""
        self._instances[instance.name] = instance

    async def remove_instance(self, name: str) -> None:
        """Delete the instance's row, if any."""
        self._instances.pop(name, None)

    async def live_instances(self, *, seen_since: datetime) -> list[InstanceInfo]:
        """Return the instances whose last heartbeat is at or after ``seen_since``, by name."""
        seen = [i for i in self._instances.values() if i.last_heartbeat_at >= seen_since]
        return sorted(seen, key=lambda i: i.name)

    def _last_error_class(self, message_id: UUID) -> str | None:
        """Return the error class of the message's last applied attempt (None without one)."""
        applied = (a for a in reversed(self._attempts) if a.message_id == message_id and a.applied)
        return next((a.error_class for a in applied), None)

    def _record_attempts(self, attempts: list[AttemptRecord], applied: set[UUID]) -> None:
        """Keep the records of existing messages, marked applied or not (as the SQL store does)."""
        self._attempts.extend(
            replace(
                a,
                applied=a.message_id in applied,
                error_class=kept_text(a.error_class),
                error=kept_text(a.error),
                response_excerpt=kept_text(a.response_excerpt),
                instance=kept_text(a.instance),
            )
            for a in attempts
            if a.message_id in self._rows
        )


def _replayed(message: Message, now: datetime) -> Message:
    """Return ``message`` replayed: PENDING, due now, attempts from zero; the last error stays."""
    return replace(
        message,
        status=Status.PENDING,
        attempts=0,
        next_attempt_at=now,
        updated_at=now,
        lease_until=None,
        claim_token=None,
    )


def _matches(message: Message, matching: MessageFilter) -> bool:
    """True when the message's recipient and creation time fit the filter."""
    if matching.to is not None and message.to != matching.to:
        return False
    if matching.since is not None and message.created_at < matching.since:
        return False
    return matching.until is None or message.created_at < matching.until
