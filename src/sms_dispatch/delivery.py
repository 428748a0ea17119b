"""Deliver one batch: claim due messages, send them with a bounded pool, record the results.

The claim is committed before any HTTP call; each result is applied with a guarded
update (the row must still be SENDING under our claim token), so a late worker or the
rescuer can never overwrite a newer state. Claims that were never sent (stop, shutdown,
batch deadline) are handed back at once with their attempt refunded. Every send (and every
invalid row) leaves an attempt record, written with the batch's finish in one transaction.
Cache entries are written in the background by a ``CacheWriter`` that keeps what Redis
refused and writes it once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sms_dispatch.cache_writer import CacheWriteCounters, CacheWriter
from sms_dispatch.domain import (
    AttemptOutcome,
    AttemptRecord,
    Message,
    Outcome,
    SendResult,
    Status,
    Transition,
    backoff_delay_s,
    excerpt,
    validate_message,
)
from sms_dispatch.errors import InvalidInput
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.observers import NullDeliveryObserver
from sms_dispatch.ports import Clock, DeliveryObserver, MessageStore, SentCache, SmsProvider

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)  # a level check without running structlog's processors


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
    max_length: int = 160
    cache_ttl_s: float = 86400.0


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


@dataclass(slots=True)
class DeliveryCounters:
    """Totals since start, for status and metrics."""

    batches: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    rescued: int = 0
    cache: CacheWriteCounters = field(default_factory=CacheWriteCounters)

    @property
    def cache_write_failures(self) -> int:
        """Entries whose cache write failed (they wait in the backlog)."""
        return self.cache.failed


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
    ) -> None:
        self._store = store
        self._provider = provider
        self._cache = cache
        self._clock = clock
        self.policy = policy
        self._instance_name = instance_name
        self.counters = DeliveryCounters()
        self.observer: DeliveryObserver = observer or NullDeliveryObserver()
        self.log_each_send = True
        """Log every sent message at INFO; continuous mode turns this off (DEBUG, and a summary)."""
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
        sends = await self._send_all(claimed, token, stop, deadline=deadline, report=report)
        await self.record(sends, report)
        report.duration_s = time.monotonic() - started
        self.counters.batches += 1
        self.observer.batch_finished(size=report.claimed, duration_s=report.duration_s)
        return report

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

    async def send_one(self, message: Message, token: str) -> tuple[Transition, AttemptRecord]:
        """Send one claimed message; return its transition and attempt record (nothing stored yet)."""
        return await self._send_one(message, token)

    async def record(
        self, sends: Sequence[tuple[Transition, AttemptRecord | None]], report: BatchReport
    ) -> None:
        """Store the results of some sends in one finish, count them into ``report``, cache the sent."""
        transitions = [transition for transition, _ in sends]
        applied = await self._finish(transitions, [record for _, record in sends if record is not None])
        self._account(report, transitions, applied)
        self._remember_sent([t for t in transitions if t.id in applied and t.status is Status.SUCCESS])

    async def _send_all(
        self,
        claimed: list[Message],
        token: str,
        stop: asyncio.Event,
        *,
        deadline: float,
        report: BatchReport,
    ) -> list[tuple[Transition, AttemptRecord | None]]:
        queue = deque(claimed)
        results: list[tuple[Transition, AttemptRecord | None]] = []

        async def worker() -> None:
            while queue and not stop.is_set() and time.monotonic() < deadline:
                message = queue.popleft()
                results.append(await self._send_one(message, token))

        async def hand_back_once_stopped() -> None:
            # On stop or shutdown the unsent claims go back now, not when the sends in flight end.
            await stop.wait()
            refunds = [_refund(m, token) for m in queue]
            queue.clear()
            if not refunds:
                return
            try:
                applied = await self._finish([t for t, _ in refunds], [])
            except Exception as exc:  # the sends in flight must still be recorded
                log.warning("handing back failed; the lease rescue returns them", error=str(exc))
                return
            report.handed_back += len(applied)
            report.lost_race += len(refunds) - len(applied)
            log.info("stopped: unsent claims handed back", handed_back=len(applied))

        workers = min(self.policy.max_workers, len(claimed))
        hand_back = asyncio.create_task(hand_back_once_stopped())
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            if not stop.is_set():
                hand_back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hand_back
        results.extend(_refund(m, token) for m in queue)  # left by the batch deadline
        return results

    async def _send_one(self, message: Message, token: str) -> tuple[Transition, AttemptRecord]:
        started_at = self._clock.now()
        started = time.monotonic()
        try:
            valid = validate_message(message.to, message.content, self.policy.max_length)
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
        clean = replace(message, to=valid.to, content=valid.content)
        try:
            result = await self._provider.send(clean, timeout_s=self.policy.per_message_timeout_s)
        except Exception as exc:  # the provider port promises not to raise; a bug must not lose the row
            log.exception(
                "provider adapter raised",
                message_id=str(message.id),
                attempt=message.attempts,
                provider_message_id=None,
            )
            result = SendResult(
                Outcome.RETRYABLE, error=f"unexpected {type(exc).__name__}: {exc}", error_class="adapter_bug"
            )
        record = self._record(message, started_at, started, AttemptOutcome(result.outcome.value), result)
        self.observer.send_finished(
            outcome=result.outcome, http_status=result.http_status, duration_s=record.duration_ms / 1000
        )
        return self._transition_for(message, token, result), record

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
        return AttemptRecord(
            message_id=message.id,
            attempt=message.attempts,
            started_at=started_at,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            outcome=outcome,
            http_status=result.http_status if result else None,
            error_class=result.error_class if result else "invalid",
            error=result.error if result else reason,
            response_excerpt=excerpt(result.raw_response) if result else None,
            instance=self._instance_name,
        )

    def _transition_for(self, message: Message, token: str, result: SendResult) -> Transition:
        now = self._clock.now()
        fields = {
            "message_id": str(message.id),
            "attempt": message.attempts,
            "provider_message_id": result.provider_message_id,
        }
        if result.outcome is Outcome.DELIVERED:
            if self.log_each_send:
                log.info("message sent", **fields)
            elif _stdlib_log.isEnabledFor(logging.DEBUG):
                log.debug("message sent", **fields)
            return Transition(
                id=message.id,
                claim_token=token,
                status=Status.SUCCESS,
                message_id=result.provider_message_id,
                raw_response=result.raw_response,
                sent_at=now,
            )
        if result.outcome is Outcome.RETRYABLE and message.attempts < self.policy.max_attempts:
            delay_s = backoff_delay_s(
                message.attempts,
                base_s=self.policy.retry_base_s,
                max_delay_s=self.policy.retry_max_delay_s,
                retry_after_s=result.retry_after_s,
            )
            log.warning("send failed, will retry", **fields, error=result.error, retry_in_s=round(delay_s, 3))
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
        log.warning("message failed", **fields, error=error)
        return Transition(
            id=message.id,
            claim_token=token,
            status=Status.FAILED,
            raw_response=result.raw_response,
            last_error=error,
        )

    async def _finish(self, transitions: list[Transition], attempts: list[AttemptRecord]) -> set[uuid.UUID]:
        """Record the outcomes, retrying while the database is briefly away (the lease covers us)."""
        delay_s = 0.2
        for attempt in range(1, 8):
            try:
                return await self._store.finish(transitions, now=self._clock.now(), attempts=attempts)
            except Exception as exc:
                if attempt == 7:
                    raise
                log.warning("recording results failed; retrying", error=str(exc), retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
        raise AssertionError("unreachable")

    def _account(self, report: BatchReport, transitions: list[Transition], applied: set[uuid.UUID]) -> None:
        for t in transitions:
            if t.id not in applied:
                report.lost_race += 1
            elif t.refund_attempt:
                report.handed_back += 1
            elif t.status is Status.SUCCESS:
                report.delivered += 1
                report.sent_ids.append(t.id)
            elif t.status is Status.PENDING:
                report.retried += 1
            else:
                report.failed += 1
        self.counters.delivered += report.delivered
        self.counters.retried += report.retried
        self.counters.failed += report.failed

    def _remember_sent(self, successes: list[Transition]) -> None:
        sent: dict[str, datetime] = {t.message_id: t.sent_at for t in successes if t.message_id and t.sent_at}
        self.cache_writer.submit(sent)

    async def drain_cache_writes(self) -> None:
        """Wait for the cache writes in flight, then try the backlog once more."""
        await self.cache_writer.drain()


def _refund(message: Message, token: str) -> tuple[Transition, AttemptRecord | None]:
    """Hand back a claim that was never sent: its attempt is undone, and it is no attempt (no record)."""
    return Transition(id=message.id, claim_token=token, status=Status.PENDING, refund_attempt=True), None
