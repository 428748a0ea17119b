"""The fleet-wide send budget (``MESSAGE_RATE_LIMIT``) on the scheduler row, by compare-and-set.

``SqlSendBudget`` is a part of ``SqlMessageStore`` kept in its own module. The budget is one
timestamp, ``scheduler_state.paced_until`` (see ``pacing.py``): a take reads it, decides in
Python, and writes the new value only if nobody changed it meanwhile, retrying if somebody
did. No lock is held across the decision, and it works alike on PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch import pacing
from sms_dispatch.adapters.tables import SCHEDULER_ROW_ID, scheduler_state

_s = scheduler_state.c
_CAS_ATTEMPTS = 20


class SqlSendBudget:
    """The send-budget methods of ``SqlMessageStore``."""

    _engine: AsyncEngine

    async def take_send_budget(self, want: int, *, now: datetime, rate_per_s: float, burst_s: float) -> int:
        """Take up to ``want`` sends from the fleet-wide budget; return how many were granted."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self._paced_until()
            decision = pacing.take(current, want=want, now=now, rate_per_s=rate_per_s, burst_s=burst_s)
            if decision.granted == 0 or await self._swap(current, decision.paced_until):
                return decision.granted
        return 0  # heavy contention: take nothing now, the caller comes back shortly

    async def return_send_budget(self, count: int, *, now: datetime, rate_per_s: float) -> None:
        """Give ``count`` granted but unused sends back to the fleet-wide budget."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self._paced_until()
            returned = pacing.give_back(current, count=count, now=now, rate_per_s=rate_per_s)
            if returned == current or await self._swap(current, returned):
                return

    async def _paced_until(self) -> datetime | None:
        statement = select(_s.paced_until).where(_s.id == SCHEDULER_ROW_ID)
        async with self._engine.connect() as connection:
            value: datetime | None = (await connection.execute(statement)).scalar_one_or_none()
        return value

    async def _swap(self, expected: datetime | None, new: datetime | None) -> bool:
        """Store ``new`` if the budget still holds ``expected``; True if it was stored."""
        statement = (
            update(scheduler_state)
            .where(_s.id == SCHEDULER_ROW_ID, _s.paced_until.is_not_distinct_from(expected))
            .values(paced_until=new)
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return result.rowcount == 1
