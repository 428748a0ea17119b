"""Deliver one batch: claim due messages, send them with a bounded pool, record the results.

The claim is committed before any HTTP call; each result is applied with a guarded
update (the row must still be SENDING under our claim token), so a late worker or the
rescuer can never overwrite a newer state. Claims that were never sent (stop, shutdown,
batch deadline) are handed back at once with their attempt refunded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sms_dispatch.domain import (
    Message,
    Outcome,
    SendResult,
    Status,
    Transition,
    backoff_delay_s,
    validate_message,
)
from sms_dispatch.errors import InvalidInput, SmsDispatchError
from sms_dispatch.logs import get_logger
from sms_dispatch.ports import Clock, MessageStore, SentCache, SmsProvider

log = get_logger(__name__)


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
    cache_write_failures: int = 0


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
    ) -> None:
        self._store = store
        self._provider = provider
        self._cache = cache
        self._clock = clock
        self.policy = policy
        self._instance_name = instance_name
        self.counters = DeliveryCounters()
        self._cache_tasks: set[asyncio.Task[None]] = set()

    async def deliver_batch(self, stop: asyncio.Event | None = None) -> BatchReport:
        """Claim up to ``batch_size`` due messages, send them, record every outcome."""
        stop = stop or asyncio.Event()
        started = time.monotonic()
        policy = self.policy
        report = BatchReport()
        report.rescued = await self._store.rescue_expired(
            now=self._clock.now(),
            max_attempts=policy.max_attempts,
            retry_delay_s=policy.retry_base_s,
        )
        token = str(uuid.uuid4())
        claimed = await self._store.claim_due(
            limit=policy.batch_size,
            now=self._clock.now(),
            lease_s=policy.lease_s,
            claim_token=token,
            claimed_by=self._instance_name,
        )
        report.claimed = len(claimed)
        if not claimed:
            report.duration_s = time.monotonic() - started
            return report
        transitions = await self._send_all(claimed, token, stop, deadline=started + policy.batch_timeout_s)
        applied = await self._finish(transitions)
        self._account(report, transitions, applied)
        self._remember_sent([t for t in transitions if t.id in applied and t.status is Status.SUCCESS])
        report.duration_s = time.monotonic() - started
        self.counters.batches += 1
        return report

    async def _send_all(
        self, claimed: list[Message], token: str, stop: asyncio.Event, *, deadline: float
    ) -> list[Transition]:
        queue = deque(claimed)
        results: list[Transition] = []

        async def worker() -> None:
            while queue and not stop.is_set() and time.monotonic() < deadline:
                message = queue.popleft()
                results.append(await self._send_one(message, token))

        workers = min(self.policy.max_workers, len(claimed))
        await asyncio.gather(*(worker() for _ in range(workers)))
        results.extend(
            Transition(id=m.id, claim_token=token, status=Status.PENDING, refund_attempt=True) for m in queue
        )
        return results

    async def _send_one(self, message: Message, token: str) -> Transition:
        try:
            valid = validate_message(message.to, message.content, self.policy.max_length)
        except InvalidInput as exc:
            reason = f"invalid message: {exc.message}"
            log.warning(
                "message invalid", message_id=str(message.id), attempt=message.attempts, reason=reason
            )
            return Transition(id=message.id, claim_token=token, status=Status.FAILED, last_error=reason)
        clean = replace(message, to=valid.to, content=valid.content)
        try:
            result = await self._provider.send(clean, timeout_s=self.policy.per_message_timeout_s)
        except Exception as exc:  # the provider port promises not to raise; a bug must not lose the row
            log.exception("provider adapter raised", message_id=str(message.id))
            result = SendResult(Outcome.RETRYABLE, error=f"unexpected {type(exc).__name__}: {exc}")
        return self._transition_for(message, token, result)

    def _transition_for(self, message: Message, token: str, result: SendResult) -> Transition:
        now = self._clock.now()
        fields = {"message_id": str(message.id), "attempt": message.attempts}
        if result.outcome is Outcome.DELIVERED:
            log.info("message sent", **fields, provider_message_id=result.provider_message_id)
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

    async def _finish(self, transitions: list[Transition]) -> set[uuid.UUID]:
        """Record the outcomes, retrying while the database is briefly away (the lease covers us)."""
        delay_s = 0.2
        for attempt in range(1, 8):
            try:
                return await self._store.finish(transitions, now=self._clock.now())
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
        if sent:
            task = asyncio.create_task(self._write_cache(sent))
            self._cache_tasks.add(task)
            task.add_done_callback(self._cache_tasks.discard)

    async def _write_cache(self, sent: dict[str, datetime]) -> None:
        try:
            await asyncio.wait_for(
                self._cache.remember_sent(sent, ttl_s=self.policy.cache_ttl_s), timeout=5.0
            )
        except (SmsDispatchError, TimeoutError, OSError) as exc:
            self.counters.cache_write_failures += len(sent)
            log.warning("cache write failed; sending goes on", entries=len(sent), error=str(exc))

    async def drain_cache_writes(self) -> None:
        """Wait for the cache writes still in flight."""
        if self._cache_tasks:
            await asyncio.gather(*self._cache_tasks, return_exceptions=True)
