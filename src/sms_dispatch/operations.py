"""Operator use cases: replay dead letters (one, or all that match a filter) and cancel.

Every change is guarded by the current status in the store's WHERE clause, so an action that
lost a race, or never fitted, changes nothing; it is then told apart here (no such message:
``NotFound``; another status: ``Conflict`` naming it).
"""

from __future__ import annotations

from uuid import UUID

from sms_dispatch.domain import Message, Status
from sms_dispatch.errors import Conflict, InvalidInput, NotFound
from sms_dispatch.logs import get_logger
from sms_dispatch.ports import Clock, MessageFilter, MessageStore

log = get_logger(__name__)

RETRY_LIMIT_MAX = 10_000
"""The most messages one bulk retry replays (its default too)."""
RETRY_BATCH = 500
"""Messages replayed per statement (and per transaction) by a bulk retry."""
REPLAYABLE = (Status.FAILED, Status.CANCELLED)


class OperatorActions:
    """Retry and cancel messages on an operator's request."""

    def __init__(self, *, store: MessageStore, clock: Clock, batch_size: int = RETRY_BATCH) -> None:
        self._store = store
        self._clock = clock
        self._batch_size = batch_size

    async def retry(self, message_id: UUID) -> Message:
        """Replay one FAILED or CANCELLED message: PENDING, due now, attempts from zero."""
        message = await self._store.retry(message_id, now=self._clock.now())
        if message is None:
            status = await self._status_of(message_id)
            raise Conflict(
                f"message {message_id} is {status.value}; only FAILED or CANCELLED messages can be retried"
            )
        log.info("message retried by operator", message_id=str(message_id))
        return message

    async def retry_matching(self, matching: MessageFilter, *, limit: int = RETRY_LIMIT_MAX) -> int:
        """Replay up to ``limit`` messages that match, ``RETRY_BATCH`` per short transaction."""
        status = matching.status or Status.FAILED
        if status not in REPLAYABLE:
            raise InvalidInput({"status": f"must be FAILED or CANCELLED, not {status.value}"})
        if not 1 <= limit <= RETRY_LIMIT_MAX:
            raise InvalidInput({"limit": f"must be 1 to {RETRY_LIMIT_MAX}, not {limit}"})
        if matching.since and matching.until and matching.since >= matching.until:
            raise InvalidInput({"until": "must be later than since"})
        retried, after = 0, None
        while retried < limit:
            want = min(self._batch_size, limit - retried)
            ids = await self._store.retry_batch(matching, now=self._clock.now(), after=after, limit=want)
            retried += len(ids)
            if len(ids) < want:
                break
            after = ids[-1]
        log.info(
            "messages retried by operator",
            retried=retried,
            status=status.value,
            error_class=matching.error_class,
            limit=limit,
        )
        return retried

    async def cancel(self, message_id: UUID) -> Message:
        """Cancel a PENDING message: it will never be claimed."""
        message = await self._store.cancel(message_id, now=self._clock.now())
        if message is None:
            status = await self._status_of(message_id)
            raise Conflict(f"message {message_id} is {status.value}; only PENDING messages can be cancelled")
        log.info("message cancelled by operator", message_id=str(message_id))
        return message

    async def _status_of(self, message_id: UUID) -> Status:
        """Return the message's current status; ``NotFound`` if there is no such message."""
        message = await self._store.get(message_id)
        if message is None:
            raise NotFound(f"no message with id {message_id}")
        return message.status
