"""The queue at a glance, for the dashboard: counts, throughput, lag and the scheduler.

Every figure comes from an indexed query (the count by status, the sent index, the due
index), so asking every two seconds stays cheap on a large table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sms_dispatch.dispatcher import Dispatcher, SchedulerStatus
from sms_dispatch.domain import Status
from sms_dispatch.ports import Clock, MessageStore

SHORT_WINDOW_S = 60.0
LONG_WINDOW_S = 300.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What the dashboard shows about the queue at ``measured_at``."""

    measured_at: datetime
    counts: Mapping[Status, int]
    sent_last_minute: int
    sent_last_5_minutes: int
    oldest_due_at: datetime | None
    scheduler: SchedulerStatus

    @property
    def lag_s(self) -> float:
        """Seconds the oldest due PENDING message has waited past its due time (0 when none)."""
        if self.oldest_due_at is None:
            return 0.0
        return max((self.measured_at - self.oldest_due_at).total_seconds(), 0.0)


async def queue_stats(*, store: MessageStore, dispatcher: Dispatcher, clock: Clock) -> QueueStats:
    """Measure the queue now: counts by status, sends in the last 1 and 5 minutes, lag, scheduler."""
    now = clock.now()
    return QueueStats(
        measured_at=now,
        counts=await store.count_by_status(),
        sent_last_minute=await store.count_sent_since(now - timedelta(seconds=SHORT_WINDOW_S)),
        sent_last_5_minutes=await store.count_sent_since(now - timedelta(seconds=LONG_WINDOW_S)),
        oldest_due_at=await store.oldest_due_at(now),
        scheduler=await dispatcher.status(),
    )
