"""Retention: delete old finished messages, with their attempt history, in small batches.

SUCCESS messages are deleted ``RETENTION_SUCCESS`` after they were sent, FAILED and CANCELLED
ones ``RETENTION_FAILED`` after their last change; ``0`` keeps them forever. PENDING and
SENDING messages and soft-deleted rows are never touched.

Each batch deletes at most ``batch_size`` rows in its own short transaction, with a pause
between batches, so pruning a large backlog never holds long locks nor starves the senders.
One instance of the fleet prunes at a time (a fleet-wide lock); the others skip that round.
The dispatcher process runs ``Pruner.run`` as a side task (every ``RETENTION_INTERVAL``);
``sms-dispatch prune`` runs one round by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sms_dispatch.faults import log_failure
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.ports import Clock, ControlStore, MessageStore

log = get_logger(__name__)

LOCK_NAME = "retention"
FIRST_RUN_DELAY_S = 60.0
"""How long after start the first round runs (or one interval, if shorter): start-up goes first."""


class _PruneBatch(Protocol):
    def __call__(self, *, before: datetime, limit: int) -> Awaitable[int]: ...


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long finished messages are kept and how pruning paces itself."""

    success_s: float = 30 * 86400.0
    failed_s: float = 90 * 86400.0
    interval_s: float = 3600.0
    batch_size: int = 1000
    pause_s: float = 0.1

    @property
    def keeps_everything(self) -> bool:
        """True when both retentions are 0 (keep forever): there is nothing to prune."""
        return self.success_s == 0 and self.failed_s == 0


@dataclass(slots=True)
class PruneReport:
    """What one pruning round deleted."""

    sent: int = 0
    failed: int = 0
    batches: int = 0
    skipped: bool = False
    """True when another instance held the retention lock, so this one did nothing."""
    duration_s: float = 0.0


class Pruner:
    """Deletes messages older than the retention policy allows, one small batch at a time."""

    def __init__(
        self, *, store: MessageStore, control: ControlStore, clock: Clock, policy: RetentionPolicy
    ) -> None:
        self._store = store
        self._control = control
        self._clock = clock
        self.policy = policy
        self._outage = OutageLog("database", "pruning", logger=log)

    async def prune(self, stop: asyncio.Event | None = None) -> PruneReport:
        """Run one round: delete every message past its retention, batch by batch, unless stopped."""
        started = time.monotonic()
        report = PruneReport()
        async with self._control.exclusive(LOCK_NAME) as held:
            if not held:
                report.skipped = True
                log.info("retention skipped: another instance is pruning")
                return report
            now = self._clock.now()
            if self.policy.success_s > 0:
                report.sent = await self._drain(
                    self._store.prune_sent, now - timedelta(seconds=self.policy.success_s), report, stop
                )
            if self.policy.failed_s > 0:
                report.failed = await self._drain(
                    self._store.prune_failed, now - timedelta(seconds=self.policy.failed_s), report, stop
                )
        report.duration_s = time.monotonic() - started
        if report.sent or report.failed:
            log.info(
                "retention pruned old messages",
                sent=report.sent,
                failed=report.failed,
                batches=report.batches,
                duration_ms=round(report.duration_s * 1000, 1),
            )
        return report

    async def _drain(
        self,
        prune_batch: _PruneBatch,
        before: datetime,
        report: PruneReport,
        stop: asyncio.Event | None,
    ) -> int:
        """Call ``prune_batch`` until a batch comes back short; pause between batches."""
        deleted = 0
        while stop is None or not stop.is_set():
            count = await prune_batch(before=before, limit=self.policy.batch_size)
            report.batches += 1
            deleted += count
            if count < self.policy.batch_size:
                break
            await asyncio.sleep(self.policy.pause_s)
        return deleted

    async def run(self, stop: asyncio.Event, *, first_run_delay_s: float = FIRST_RUN_DELAY_S) -> None:
        """Prune every ``interval_s`` until ``stop`` is set; a failed round is logged, not fatal."""
        if self.policy.keeps_everything:
            log.info("retention off: RETENTION_SUCCESS and RETENTION_FAILED are 0")
            return
        wait_s = min(first_run_delay_s, self.policy.interval_s)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait_s)
            if stop.is_set():
                return
            try:
                await self.prune(stop)
            except Exception as exc:
                log_failure(
                    exc, "retention round failed; trying again next interval", outage=self._outage, logger=log
                )
            else:
                self._outage.succeeded()
            wait_s = self.policy.interval_s
