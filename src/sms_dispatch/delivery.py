"""Deliver one batch: claim due messages, send them with a bounded pool, record the results.

The claim is committed before any HTTP call; each result is applied with a guarded
update (the row must still be SENDING under our claim token), so a late worker or the
rescuer can never overwrite a newer state. Results are recorded as they complete, through
the group-commit recorder (``recorder.py``) continuous mode uses too: one finish per group,
each result within a short window, never only at the batch's end. Claims that were never
sent (stop, shutdown, batch deadline) are handed back at once with their attempt refunded.
Every send (and every invalid row) leaves an attempt record, written with its group's finish
in one transaction. Cache entries are written in the background by a ``CacheWriter`` that
keeps what Redis refused and writes it once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from sms_dispatch.cache_writer import CacheWriter
from sms_dispatch.domain import (
    AttemptOutcome,
    AttemptRecord,
    Message,
    Outcome,
    SendResult,
    Status,
    Transition,
    validate_message,
)
from sms_dispatch.errors import InvalidInput
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.observers import NullDeliveryObserver
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.outcomes import (
    BatchReport,
    DeliveryCounters,
    DeliveryPolicy,
    Sent,
    attempt_record,
    refund,
    tally,
    transition_for,
)
from sms_dispatch.ports import Clock, DeliveryObserver, MessageStore, SentCache, SmsProvider
from sms_dispatch.recorder import GroupRecorder

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)  # a level check without running structlog's processors


class Deliverer:
    """Runs batches against the ports; holds no state between batches but its counters."""

    def __init__(
        self,
        *,
        store: MessageStore,
        provider: SmsProvider,
        cache: SentCache,
        clock: Clock,
        policy: DeliveryPolicy,
        instance_name: str,
        observer: DeliveryObserver | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self._store = store
        self._redact = redact
        """Masks known secrets in error text the core writes itself (an adapter that raised)."""
        self._provider = provider
        self._cache = cache
        self._clock = clock
        self.policy = policy
        self._instance_name = instance_name
        self.counters = DeliveryCounters()
        self.observer: DeliveryObserver = observer or NullDeliveryObserver()
        self._recording_outage = OutageLog("database", "recording results", logger=log)
        self.cache_writer = CacheWriter(cache, ttl_s=policy.cache_ttl_s, counters=self.counters.cache)

    async def deliver_batch(self, stop: asyncio.Event | None = None) -> BatchReport:
        """Claim up to ``batch_size`` due messages, send them, record every outcome."""
        stop = stop or asyncio.Event()
        started = time.monotonic()
        policy = self.policy
        report = BatchReport()
        report.rescued = await self.rescue()
        token, claimed = await self.claim(policy.batch_size)
        report.claimed = len(claimed)
        if not claimed:
            report.duration_s = time.monotonic() - started
            return report
        deadline = started + policy.batch_timeout_s
        recorder = self.new_recorder(report)
        try:
            await self._send_all(claimed, token, stop, deadline=deadline, recorder=recorder)
            await recorder.drain()  # the last results now, not at their window's end
        except asyncio.CancelledError:
            recorder.abort()
            raise
        if recorder.error is not None:
            raise recorder.error
        report.duration_s = time.monotonic() - started
        self.counters.batches += 1
        self.observer.batch_finished(size=report.claimed, duration_s=report.duration_s)
        return report

    def new_recorder(
        self, report: BatchReport, *, on_settled: Callable[[list[Sent]], None] | None = None
    ) -> GroupRecorder[Sent]:
        """Return a group-commit recorder that stores results and counts them into ``report``."""
        policy = self.policy

        async def write(group: list[Sent]) -> None:
            await self.record(group, report)

        return GroupRecorder(
            write,
            max_group=max(policy.batch_size, policy.max_workers),
            retry_for_s=policy.lease_s,
            window_s=policy.record_window_s,
            outage=self._recording_outage,
            on_settled=on_settled,
        )

    async def rescue(self) -> int:
        """Return expired leases to PENDING (or FAILED); return how many rows were rescued."""
        policy = self.policy
        rescued = await self._store.rescue_expired(
            now=self._clock.now(), max_attempts=policy.max_attempts, retry_delay_s=policy.retry_base_s
        )
        self.counters.rescued += rescued
        return rescued

    async def claim(self, limit: int) -> tuple[str, list[Message]]:
        """Claim up to ``limit`` due messages under a new token; return the token and the rows."""
        token = str(uuid.uuid4())
        claimed = await self._store.claim_due(
            limit=limit,
            now=self._clock.now(),
            lease_s=self.policy.lease_s,
            claim_token=token,
            claimed_by=self._instance_name,
        )
        return token, claimed

    async def record(self, sends: Sequence[Sent], report: BatchReport) -> None:
        """Store the results of some sends in one finish, count them into ``report``, cache the sent."""
        transitions = [transition for transition, _ in sends]
        attempts = [record for _, record in sends if record is not None]
        applied = await self._store.finish(transitions, now=self._clock.now(), attempts=attempts)
        group = tally(transitions, applied)
        report.add(group)
        self.counters.add(group)
        self._remember_sent([t for t in transitions if t.id in applied and t.status is Status.SUCCESS])

    async def _send_all(
        self,
        claimed: list[Message],
        token: str,
        stop: asyncio.Event,
        *,
        deadline: float,
        recorder: GroupRecorder[Sent],
    ) -> None:
        queue = deque(claimed)

        async def worker() -> None:
            while queue and not stop.is_set() and time.monotonic() < deadline:
                message = queue.popleft()
                recorder.add(await self.send_one(message, token))

        async def hand_back_once_stopped() -> None:
            # On stop or shutdown the unsent claims go back now, not when the sends in flight end.
            await stop.wait()
            if queue:
                log.info("stopped: unsent claims handed back", handed_back=len(queue))
            _hand_back(queue, token, recorder)

        workers = min(self.policy.max_workers, len(claimed))
        hand_back = asyncio.create_task(hand_back_once_stopped())
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            if not stop.is_set():
                hand_back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hand_back
        _hand_back(queue, token, recorder)  # left by the batch deadline

    async def send_one(
        self, message: Message, token: str, *, sent_level: int = logging.INFO
    ) -> tuple[Transition, AttemptRecord]:
        """Send one claimed message; return its transition and attempt record (nothing stored yet).

        ``sent_level`` is the level of its "message sent" line (continuous mode: DEBUG, for it
        logs a summary a second instead).
        """
        started_at = self._clock.now()
        started = time.monotonic()
        try:
            clean = message if message.validated else self._checked(message)
        except InvalidInput as exc:
            reason = f"invalid message: {exc.message}"
            log.warning(
                "message invalid",
                message_id=str(message.id),
                attempt=message.attempts,
                provider_message_id=None,
                reason=reason,
            )
            invalid = Transition(id=message.id, claim_token=token, status=Status.FAILED, last_error=reason)
            return invalid, self._record(message, started_at, started, AttemptOutcome.INVALID, reason=reason)
        try:
            result = await self._provider.send(clean, timeout_s=self.policy.per_message_timeout_s)
        except Exception as exc:  # the provider port promises not to raise; a bug must not lose the row
            log.exception(
                "provider adapter raised",
                message_id=str(message.id),
                attempt=message.attempts,
                provider_message_id=None,
            )
            error = self._redact(f"unexpected {type(exc).__name__}: {exc}")
            result = SendResult(Outcome.RETRYABLE, error=error, error_class="adapter_bug")
        record = self._record(message, started_at, started, AttemptOutcome(result.outcome.value), result)
        self.observer.send_finished(
            outcome=result.outcome, http_status=result.http_status, duration_s=record.duration_ms / 1000
        )
        return self._transition_for(message, token, result, sent_level), record

    def _checked(self, message: Message) -> Message:
        """Check a row that did not come in through the service; raise ``InvalidInput`` if bad."""
        check = self.policy.recipient_check
        valid = validate_message(message.to, message.content, self.policy.max_length, recipient_check=check)
        if (valid.to, valid.content) == (message.to, message.content):
            return message
        return replace(message, to=valid.to, content=valid.content)

    def _record(
        self,
        message: Message,
        started_at: datetime,
        started: float,
        outcome: AttemptOutcome,
        result: SendResult | None = None,
        *,
        reason: str | None = None,
    ) -> AttemptRecord:
        """The record of this attempt: the provider's answer, or why it was not sent."""
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        return attempt_record(
            message, started_at, duration_ms, outcome, result, reason=reason, instance=self._instance_name
        )

    def _transition_for(
        self, message: Message, token: str, result: SendResult, sent_level: int
    ) -> Transition:
        transition = transition_for(message, token, result, self.policy, now=self._clock.now())
        fields = {
            "message_id": str(message.id),
            "attempt": message.attempts,
            "provider_message_id": result.provider_message_id,
        }
        if transition.status is Status.SUCCESS:
            if _stdlib_log.isEnabledFor(sent_level):
                log.log(sent_level, "message sent", **fields)
        elif transition.status is Status.PENDING:
            assert transition.next_attempt_at is not None
            retry_in_s = (transition.next_attempt_at - self._clock.now()).total_seconds()
            log.warning(
                "send failed, will retry", **fields, error=result.error, retry_in_s=round(retry_in_s, 3)
            )
        else:
            log.warning("message failed", **fields, error=transition.last_error)
        return transition

    def _remember_sent(self, successes: list[Transition]) -> None:
        sent: dict[str, datetime] = {t.message_id: t.sent_at for t in successes if t.message_id and t.sent_at}
        self.cache_writer.submit(sent)

    async def drain_cache_writes(self) -> None:
        """Wait for the cache writes in flight, then try the backlog once more."""
        await self.cache_writer.drain()


def _hand_back(queue: deque[Message], token: str, recorder: GroupRecorder[Sent]) -> None:
    """Hand the unsent claims back (attempt refunded), written at once."""
    while queue:
        recorder.add(refund(queue.popleft(), token))
    recorder.flush()


__all__ = ["BatchReport", "Deliverer", "DeliveryCounters", "DeliveryPolicy", "Sent"]
