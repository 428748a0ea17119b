"""Continuous mode (``SCHEDULER_INTERVAL=0``): a pool of senders that refills as it drains.

The scheduled mode claims a batch, sends it and waits for its last send before claiming the
next, so every batch ends in a half-empty wave. Here ``MESSAGE_MAX_WORKERS`` senders take
claimed rows one at a time from a local buffer; a refiller claims the next
``MESSAGE_BATCH_SIZE`` rows as soon as the buffer runs below a low-water mark, and the
group-commit recorder that batches use too (``recorder.py``) stores the results as they
complete: one finish per group, each result within a short window, one cache write per group.
Idle (a claim came back short), the refiller sleeps until a ``NewMessageSignal`` fires
(PostgreSQL NOTIFY from migration 0005's triggers), its own earliest retry falls due, or the
poll interval ends: ``IDLE_POLL_S``, or ``LISTENING_IDLE_POLL_S`` while the signal listens.

``MESSAGE_RATE_LIMIT``: see ``rate_budget.py``. Claims reread the fleet-wide switch (at most every ``RUNNING_TRUSTED_S`` while it is on). A
stop and a shutdown hand the buffered, unsent claims back at once, attempt refunded; sends in
flight finish and are recorded. A claim older than ``SCHEDULER_BATCH_TIMEOUT`` is handed back
unsent, so no send starts near the end of its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import datetime

from sms_dispatch.delivery import BatchReport, Deliverer
from sms_dispatch.domain import Message, Status, Transition
from sms_dispatch.faults import log_failure
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.outcomes import Sent
from sms_dispatch.ports import SWITCH_CHANGED, Clock, ControlStore, NewMessageSignal
from sms_dispatch.progress import Progress
from sms_dispatch.rate_budget import RateBudget

log = get_logger(__name__)

IDLE_POLL_S = 1.0
"""How long an idle pump waits for new rows when nothing can wake it (SQLite, listener down)."""
LISTENING_IDLE_POLL_S = 5.0
"""The same while the signal listens: polling is then only the fallback."""
STATE_POLL_S = 5.0
"""How often a switched-off pump rereads the fleet-wide switch."""
RUNNING_TRUSTED_S = 0.5
"""How long a switch read as on is trusted before the next claim rereads it (a stop made on
another instance reaches this one within this); a stop made here applies at once."""
RESCUE_EVERY_S = 5.0
ERROR_BACKOFF_S = 2.0


class Pump:
    """The continuous sender pool around a ``Deliverer``: refiller, senders, recorder."""

    def __init__(
        self,
        *,
        deliverer: Deliverer,
        control: ControlStore,
        signal: NewMessageSignal,
        clock: Clock,
        rate_limit_per_s: float | None = None,
        idle_poll_s: float | None = None,
        progress: Progress | None = None,
    ) -> None:
        policy = deliverer.policy
        self._deliverer = deliverer
        self._control = control
        self._signal = signal
        self._clock = clock
        self._budget = RateBudget(
            control=control, clock=clock, rate_per_s=rate_limit_per_s, claim_size=policy.batch_size
        )
        self._idle_poll_s = idle_poll_s
        self._claim_size = policy.batch_size
        self._low_water = max(policy.max_workers, policy.batch_size // 2)
        self._record_size = max(policy.batch_size, policy.max_workers)
        self._max_wait_s = policy.batch_timeout_s
        # Claimed rows not yet recorded: claiming stops at this bound, so a slow database or
        # provider never piles up leases (each unrecorded claim is a row some finish must touch).
        self._outstanding = 0
        self._max_outstanding = self._low_water + self._claim_size + self._record_size
        self._buffer: deque[tuple[Message, str, float]] = deque()
        self._ready = asyncio.Event()  # the buffer has rows: senders wait on it
        self._need = asyncio.Event()  # the buffer ran low: the busy refiller waits on it
        self._wake = asyncio.Event()  # a notification, start or close: the idle refiller waits on it
        self._closing = False
        self._sending = 0
        self._next_retry_at: datetime | None = None
        self._running_until = 0.0
        self._recheck = False
        self._progress = progress or Progress()
        self._recorder = deliverer.new_recorder(self._progress.current, on_settled=self._recorded)
        self._claiming_outage = OutageLog("database", "claiming", logger=log)
        signal.subscribe(self.wake)

    @property
    def last_report(self) -> BatchReport | None:
        """The last progress summary logged that had anything in it."""
        return self._progress.last_report

    @property
    def busy(self) -> bool:
        """Return True while rows are buffered or being sent."""
        return bool(self._buffer) or self._sending > 0

    def wake(self, payload: str = "") -> None:
        """Look for due rows now (a notification); after a switch change, reread the switch first."""
        if payload == SWITCH_CHANGED:
            self._running_until = 0.0
            self._recheck = True
        self._wake.set()
        self._need.set()

    def stop_sends(self) -> None:
        """Start no new send: hand the buffered claims back (the switch was turned off)."""
        self._running_until = 0.0
        self._hand_back()

    def close(self) -> None:
        """Stop claiming and hand the buffer back; ``run`` returns once in-flight sends are recorded."""
        self._closing = True
        self._hand_back()
        self.wake()
        self._ready.set()

    async def run(self) -> None:
        """Send continuously until ``close()``."""
        workers = self._deliverer.policy.max_workers
        senders = [asyncio.create_task(self._sender()) for _ in range(workers)]
        log.info(
            "continuous mode",
            workers=workers,
            batch_size=self._claim_size,
            rate_limit_per_s=self._budget.rate_per_s,
        )
        try:
            await self._refill()
        except asyncio.CancelledError:
            # The grace period is over: in-flight sends are cancelled, their leases rescued later.
            for task in senders:
                task.cancel()
            self._recorder.abort()
            raise
        finally:
            self.close()
        await asyncio.gather(*senders)
        try:
            await self._recorder.drain()
        except asyncio.CancelledError:  # the grace period ended while results waited for the database
            self._recorder.abort()
            raise
        self._progress.log(force=True)

    async def _refill(self) -> None:
        rescued_at = 0.0
        while not self._closing:
            if self._recheck:  # the switch changed somewhere: a stop must not wait for the next claim
                self._recheck = False
                with contextlib.suppress(Exception):  # a failed read is retried by the claim below
                    if not await self._running():
                        self._hand_back()
            if len(self._buffer) >= self._low_water or self._outstanding >= self._max_outstanding:
                self._need.clear()
                await self._need.wait()
                continue
            self._wake.clear()  # before the claim: a notification during it is not lost
            try:
                if not await self._running():
                    self._claiming_outage.succeeded()  # the switch was read: the database answers
                    self._hand_back()
                    await self._idle(STATE_POLL_S)
                    continue
                if time.monotonic() - rescued_at >= RESCUE_EVERY_S:
                    rescued_at = time.monotonic()
                    self._progress.current.rescued += await self._deliverer.rescue()
                want = await self._budget.take(self._claim_size)
                if want == 0:
                    await asyncio.sleep(self._budget.wait_s())
                    continue
                token, claimed = await self._deliverer.claim(want)
                await self._budget.give_back(want - len(claimed))
            except Exception as exc:
                log_failure(exc, "claiming failed; retrying", outage=self._claiming_outage, logger=log)
                await self._idle(ERROR_BACKOFF_S)
                continue
            self._claiming_outage.succeeded()
            if claimed:
                self._outstanding += len(claimed)
                at = time.monotonic()
                self._buffer.extend((message, token, at) for message in claimed)
                self._progress.current.claimed += len(claimed)
                self._ready.set()
            if len(claimed) < want:
                await self._idle(self._idle_timeout_s())

    async def _running(self) -> bool:
        """Return the fleet-wide switch, reread at most every ``RUNNING_TRUSTED_S`` while on."""
        if time.monotonic() < self._running_until:
            return True
        running = (await self._control.scheduler_state()).running
        self._running_until = time.monotonic() + RUNNING_TRUSTED_S if running else 0.0
        return running

    def _idle_timeout_s(self) -> float:
        timeout_s = LISTENING_IDLE_POLL_S if self._signal.listening else IDLE_POLL_S
        if self._idle_poll_s is not None:
            timeout_s = self._idle_poll_s
        if self._next_retry_at is not None:
            due_in_s = (self._next_retry_at - self._clock.now()).total_seconds()
            if due_in_s <= timeout_s:
                self._next_retry_at = None
                timeout_s = max(due_in_s, 0.01)
        return timeout_s

    async def _idle(self, timeout_s: float) -> None:
        """Wait for a wake-up or ``timeout_s``; meanwhile log the summary when its period ends."""
        deadline = time.monotonic() + timeout_s
        while (left_s := deadline - time.monotonic()) > 0:
            self._progress.log()
            due_s = self._progress.due_in_s()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=left_s if due_s is None else min(left_s, due_s)
                )
                return

    async def _sender(self) -> None:
        buffer, deliverer = self._buffer, self._deliverer
        while True:
            if not buffer:
                if self._closing:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            message, token, claimed_at = buffer.popleft()
            if len(buffer) < self._low_water:
                self._need.set()
            if time.monotonic() - claimed_at > self._max_wait_s:
                self._add_result((_hand_back(message, token), None))
                continue
            self._sending += 1
            try:
                sent = await deliverer.send_one(message, token, sent_level=logging.DEBUG)
            except Exception:
                # A bug after the provider call: the row may have been sent, so it stays SENDING
                # and the lease rescue decides (at least once), rather than a hand-back here.
                log.exception(
                    "sending failed unexpectedly; the lease will be rescued", message_id=str(message.id)
                )
                self._outstanding -= 1
                continue
            finally:
                self._sending -= 1
            self._add_result(sent)

    def _add_result(self, sent: Sent) -> None:
        self._recorder.add(sent)

    def _hand_back(self) -> None:
        while self._buffer:
            message, token, _ = self._buffer.popleft()
            self._add_result((_hand_back(message, token), None))
        self._recorder.flush()  # at once: another instance may claim them now

    def _recorded(self, group: list[Sent]) -> None:
        """After a group is written (or given up to the lease rescue): claim again, wake for retries."""
        self._outstanding -= len(group)
        self._need.set()
        retries = [t.next_attempt_at for t, _ in group if t.status is Status.PENDING and t.next_attempt_at]
        if retries:
            earliest = min(retries)
            if self._next_retry_at is None or earliest < self._next_retry_at:
                self._next_retry_at = earliest
                self._wake.set()  # the idle refiller sets its timer again, to this retry
        self._progress.log()


def _hand_back(message: Message, token: str) -> Transition:
    """The transition that returns an unsent claim with its attempt refunded."""
    return Transition(id=message.id, claim_token=token, status=Status.PENDING, refund_attempt=True)


__all__ = ["Pump"]
