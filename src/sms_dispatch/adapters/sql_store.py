"""The message and scheduler stores on SQLAlchemy Core: every query the service runs.

One ``SqlMessageStore`` serves PostgreSQL and SQLite. The hot claim and finish statements
are built in ``sql_statements.py``; rows become ``Message`` objects in one place,
``sql_rows.from_row``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import any_, bindparam, case, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sms_dispatch.adapters.sql_bulk_insert import insert_pending
from sms_dispatch.adapters.sql_column_limits import raise_if_too_long
from sms_dispatch.adapters.sql_errors import translate_unreachable
from sms_dispatch.adapters.sql_listing import SqlListing
from sms_dispatch.adapters.sql_operations import SqlOperations
from sms_dispatch.adapters.sql_rows import from_row, from_rows
from sms_dispatch.adapters.sql_send_budget import SqlSendBudget
from sms_dispatch.adapters.sql_statements import (
    CLAIM_PG,
    CLAIM_SQLITE,
    FINISH_BATCH,
    FINISH_BATCH_SQLITE,
    INSERT_ATTEMPTS_PG,
    INSERT_ATTEMPTS_SQLITE,
    LEASE_EXPIRED,
    LOCK_EXPIRED_PG,
    LOCK_EXPIRED_SQLITE,
    RELEASED,
    RESCUE_LOCK_KEY,
    attempt_columns,
    sqlite_attempts,
    sqlite_batch,
    transition_columns,
)
from sms_dispatch.adapters.sql_upkeep import SqlUpkeep
from sms_dispatch.adapters.tables import (
    SCHEDULER_ROW_ID,
    SENDING,
    SUCCESS,
    UtcDateTime,
    messages,
    scheduler_state,
)
from sms_dispatch.domain import AttemptRecord, Message, NewMessage, Status, Transition, lease_expired_attempt
from sms_dispatch.ports import SchedulerState

_m = messages
_live = _m.c.deleted_at.is_(None)
_due_order = attrgetter("next_attempt_at", "id")


@translate_unreachable
class SqlMessageStore(SqlOperations, SqlUpkeep, SqlSendBudget, SqlListing):
    """``MessageStore`` and ``ControlStore`` on a SQLAlchemy async engine (PostgreSQL or SQLite).

    Every public method raises ``DependencyUnavailable`` when the database cannot be reached
    (``sql_errors.py``), whatever the driver said.

    The operator actions, idempotent creation, attempt history and instance list are in
    ``SqlOperations`` (``sql_operations.py``); lag, retention, ping and fleet locks in
    ``SqlUpkeep`` (``sql_upkeep.py``); the fleet's send budget in ``SqlSendBudget``
    (``sql_send_budget.py``); the listings and counts in ``SqlListing`` (``sql_listing.py``).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._held_locks: set[str] = set()

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
                validated=True,
            )
            .returning(*_m.c)
        )
        async with self._engine.begin() as connection:
            try:
                row = (await connection.execute(statement)).one()
            except DBAPIError as error:
                raise_if_too_long(error, message)
                raise
        return from_row(row)

    async def create_many(self, batch: Sequence[NewMessage], *, now: datetime) -> int:
        """Insert every message of ``batch`` as PENDING in one transaction; return how many were stored."""
        return await insert_pending(self._engine, batch, now=now)

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
            result = await connection.execute(statement, params)
            claimed = from_rows(result.all(), list(result.keys()))
        # RETURNING promises no order.
        return sorted(claimed, key=_due_order)

    async def finish(
        self, transitions: Sequence[Transition], *, now: datetime, attempts: Sequence[AttemptRecord] = ()
    ) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its token; return applied ids.

        The attempt records go in with the same transaction, marked applied or not.
        """
        if not transitions and not attempts:
            return set()
        async with self._engine.begin() as connection:
            if not transitions:
                applied: set[UUID] = set()
            elif self._postgres:
                applied = await self._finish_in_one_statement(connection, transitions, now)
            else:
                applied = await self._finish_in_one_sqlite_statement(connection, transitions, now)
            await self._record_attempts(connection, attempts, applied)
        return applied

    async def _finish_in_one_statement(
        self, connection: AsyncConnection, transitions: Sequence[Transition], now: datetime
    ) -> set[UUID]:
        """Apply a batch of transitions with one ``UPDATE ... FROM unnest(...)`` (PostgreSQL)."""
        params: dict[str, Any] = transition_columns(transitions, now)
        result = await connection.execute(FINISH_BATCH, {**params, "finished_at": now})
        return set(result.scalars())

    async def _finish_in_one_sqlite_statement(
        self, connection: AsyncConnection, transitions: Sequence[Transition], now: datetime
    ) -> set[UUID]:
        """Apply a batch of transitions with one ``UPDATE ... FROM json_each(...)`` (SQLite)."""
        params = {"batch": sqlite_batch(transitions, now), "finished_at": now}
        result = await connection.execute(FINISH_BATCH_SQLITE, params)
        return {row.id for row in result}

    async def _record_attempts(
        self, connection: AsyncConnection, attempts: Sequence[AttemptRecord], applied: set[UUID]
    ) -> None:
        """Insert the attempt records of existing messages in one statement, marking the applied.

        An answer that came too late (its row was rescued meanwhile) is kept, marked not
        applied: the provider did get that request, and the history should say so.
        """
        late = {a.message_id for a in attempts} - applied
        if late:
            exists = select(_m.c.id).where(_m.c.id.in_(late))
            late &= set((await connection.execute(exists)).scalars())
        kept = applied | late
        records = [a for a in attempts if a.message_id in kept]
        await self._insert_attempts(connection, records, applied)

    async def _insert_attempts(
        self, connection: AsyncConnection, records: Sequence[AttemptRecord], applied: set[UUID] | None = None
    ) -> None:
        """Insert attempt records in one statement; with ``applied``, only those ids count as applied."""
        if not records:
            return
        flags = [applied is None or r.message_id in applied for r in records]
        if self._postgres:
            await connection.execute(INSERT_ATTEMPTS_PG, attempt_columns(records, flags))
        else:
            await connection.execute(INSERT_ATTEMPTS_SQLITE, {"batch": sqlite_attempts(records, flags)})

    async def rescue_expired(self, *, now: datetime, max_attempts: int, retry_delay_s: float) -> int:
        """Return SENDING rows whose lease ended to PENDING (or FAILED when out of attempts).

        One transaction: lock the expired rows, change them, record a ``lease_expired`` attempt
        each. On PostgreSQL an advisory lock lets one instance rescue at a time; the others
        skip (return 0) rather than queue behind it.
        """
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
            .returning(_m.c.id)
        )
        async with self._engine.begin() as connection:
            if self._postgres:
                locked = select(func.pg_try_advisory_xact_lock(RESCUE_LOCK_KEY))
                if not (await connection.execute(locked)).scalar_one():
                    return 0
                expired = (await connection.execute(LOCK_EXPIRED_PG, {"now": now})).all()
                # Only the rows locked above: the others are being finished right now.
                ids = bindparam("rescue_ids", [row.id for row in expired], postgresql.ARRAY(_m.c.id.type))
                statement = statement.where(_m.c.id == any_(ids))
            else:
                expired = (await connection.execute(LOCK_EXPIRED_SQLITE, {"now": now})).all()
            if not expired:
                return 0
            rescued = set((await connection.execute(statement)).scalars())
            records = [
                lease_expired_attempt(
                    row.id,
                    attempt=row.attempts,
                    claimed_at=row.updated_at,
                    claimed_by=row.claimed_by,
                    now=now,
                    error=LEASE_EXPIRED,
                )
                for row in expired
                if row.id in rescued
            ]
            await self._insert_attempts(connection, records)
        return len(rescued)

    async def count_sent_since(self, since: datetime) -> int:
        """Return how many live SUCCESS messages were sent at or after ``since`` (the sent index)."""
        statement = (
            select(func.count()).select_from(_m).where(_m.c.status == SUCCESS, _live, _m.c.sent_at >= since)
        )
        async with self._engine.connect() as connection:
            count: int = (await connection.execute(statement)).scalar_one()
        return count

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
