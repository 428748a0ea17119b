"""The message and scheduler stores on SQLAlchemy Core: every query the service runs.

One ``SqlMessageStore`` serves PostgreSQL and SQLite. The hot claim and finish statements
are built in ``sql_statements.py``; rows become ``Message`` objects in one place,
``sql_statements.from_row``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import and_, case, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_statements import (
    CLAIM_PG,
    CLAIM_SQLITE,
    FINISH_BATCH,
    FINISH_ONE,
    LEASE_EXPIRED,
    RELEASED,
    TRANSITION,
    from_row,
    transition_fields,
)
from sms_dispatch.adapters.tables import (
    SCHEDULER_ROW_ID,
    SENDING,
    SUCCESS,
    UtcDateTime,
    messages,
    scheduler_state,
)
from sms_dispatch.domain import Message, NewMessage, Status, Transition
from sms_dispatch.ports import Page, SchedulerState

_m = messages
_live = _m.c.deleted_at.is_(None)


class SqlMessageStore:
    """``MessageStore`` and ``ControlStore`` on a SQLAlchemy async engine (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    async def create(self, message: NewMessage, *, now: datetime) -> Message:
        """Insert one PENDING message and return it."""
        statement = (
            insert(_m)
            .values(
                id=uuid4(),
                to=message.to,
                content=message.content,
                status=Status.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            .returning(*_m.c)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).one()
        return from_row(row)

    async def get(self, message_id: UUID) -> Message | None:
        """Return the live message with this id, or None."""
        statement = select(_m).where(_m.c.id == message_id, _live)
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else from_row(row)

    async def claim_due(
        self, *, limit: int, now: datetime, lease_s: float, claim_token: str, claimed_by: str
    ) -> list[Message]:
        """Move up to ``limit`` due rows to SENDING under a lease in one statement; oldest first."""
        if limit <= 0:
            return []
        statement = CLAIM_PG if self._postgres else CLAIM_SQLITE
        lease_until = now + timedelta(seconds=lease_s)
        params = {"now": now, "claim_limit": limit, "lease_until": lease_until}
        params |= {"claim_token": claim_token, "claimed_by": claimed_by}
        async with self._engine.begin() as connection:
            rows = (await connection.execute(statement, params)).all()
        # RETURNING promises no order.
        oldest_first = sorted(rows, key=lambda row: (row.next_attempt_at, row.id))
        return [from_row(row) for row in oldest_first]

    async def finish(self, transitions: Sequence[Transition], *, now: datetime) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its token; return applied ids."""
        if not transitions:
            return set()
        if self._postgres:
            return await self._finish_in_one_statement(transitions, now)
        return await self._finish_row_by_row(transitions, now)

    async def _finish_in_one_statement(self, transitions: Sequence[Transition], now: datetime) -> set[UUID]:
        """Apply a batch of transitions with one ``UPDATE ... FROM unnest(...)`` (PostgreSQL)."""
        each = [transition_fields(t, now) for t in transitions]
        params: dict[str, Any] = {f"all_{name}": [e[name] for e in each] for name in TRANSITION}
        async with self._engine.begin() as connection:
            result = await connection.execute(FINISH_BATCH, {**params, "finished_at": now})
            return {row.id for row in result}

    async def _finish_row_by_row(self, transitions: Sequence[Transition], now: datetime) -> set[UUID]:
        """Apply a batch of transitions one guarded UPDATE each, in one transaction (SQLite)."""
        applied: set[UUID] = set()
        async with self._engine.begin() as connection:
            for t in transitions:
                params = {f"t_{name}": value for name, value in transition_fields(t, now).items()}
                result = await connection.execute(FINISH_ONE, {**params, "finished_at": now})
                applied.update(row.id for row in result)
        return applied

    async def rescue_expired(self, *, now: datetime, max_attempts: int, retry_delay_s: float) -> int:
        """Return SENDING rows whose lease ended to PENDING (or FAILED when out of attempts)."""
        exhausted = _m.c.attempts >= max_attempts
        retry_at = literal(now + timedelta(seconds=retry_delay_s), UtcDateTime())
        statement = (
            update(_m)
            .where(_m.c.status == SENDING, _m.c.lease_until < now)
            .values(
                status=case((exhausted, Status.FAILED.value), else_=Status.PENDING.value),
                next_attempt_at=case((exhausted, _m.c.next_attempt_at), else_=retry_at),
                last_error=LEASE_EXPIRED,
                updated_at=now,
                **RELEASED,
            )
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return result.rowcount

    async def list_sent(self, *, page: int, limit: int) -> Page:
        """Return one page of live SUCCESS messages, newest ``sent_at`` first, and their total."""
        sent = and_(_m.c.status == SUCCESS, _live)
        page_statement = (
            select(_m)
            .where(sent)
            .order_by(_m.c.sent_at.desc(), _m.c.id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        )
        count_statement = select(func.count()).select_from(_m).where(sent)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(page_statement)).all()
            total = (await connection.execute(count_statement)).scalar_one()
        return Page(items=[from_row(row) for row in rows], total=total)

    async def count_by_status(self) -> Mapping[Status, int]:
        """Return how many live messages are in each status (every status, zero included)."""
        statement = select(_m.c.status, func.count()).where(_live).group_by(_m.c.status)
        counts = dict.fromkeys(Status, 0)
        async with self._engine.connect() as connection:
            for status, count in await connection.execute(statement):
                if status in Status.__members__:
                    counts[Status(status)] = count
        return counts

    async def scheduler_state(self) -> SchedulerState:
        """Return the fleet-wide scheduler switch (running when never set)."""
        statement = select(scheduler_state).where(scheduler_state.c.id == SCHEDULER_ROW_ID)
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        if row is None:
            return SchedulerState(running=True, last_run_at=None, updated_at=None)
        return SchedulerState(row.running, row.last_run_at, row.updated_at)

    async def set_running(self, running: bool, *, now: datetime) -> SchedulerState:
        """Store the fleet-wide scheduler switch and return the new state."""
        dialect_insert = postgresql.insert if self._postgres else sqlite.insert
        statement = (
            dialect_insert(scheduler_state)
            .values(id=SCHEDULER_ROW_ID, running=running, updated_at=now)
            .on_conflict_do_update(
                index_elements=[scheduler_state.c.id],
                set_={"running": running, "updated_at": now},
            )
            .returning(*scheduler_state.c)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).one()
        return SchedulerState(row.running, row.last_run_at, row.updated_at)

    async def take_batch_slot(self, *, now: datetime, interval_s: float) -> bool:
        """Take the next batch slot if running and ``interval_s`` has passed; True if taken."""
        state = scheduler_state.c
        conditions = [state.id == SCHEDULER_ROW_ID, state.running.is_(True)]
        if interval_s > 0:
            threshold = now - timedelta(seconds=interval_s)
            conditions.append(or_(state.last_run_at.is_(None), state.last_run_at <= threshold))
        statement = update(scheduler_state).where(*conditions).values(last_run_at=now)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return result.rowcount == 1


__all__ = ["LEASE_EXPIRED", "SqlMessageStore"]
