"""The message and scheduler stores on SQLAlchemy Core: every SQL statement the service runs.

One ``SqlMessageStore`` serves PostgreSQL and SQLite. Where the backends differ (claiming due
rows, finishing a batch) each has its own statement, named here. Rows become ``Message``
objects in one place, ``_from_row``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    Boolean,
    Integer,
    Row,
    String,
    Update,
    and_,
    any_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeEngine

from sms_dispatch.adapters.tables import (
    DUE_INDEX,
    PENDING,
    SCHEDULER_ROW_ID,
    SENDING,
    SUCCESS,
    UtcDateTime,
    messages,
    scheduler_state,
)
from sms_dispatch.domain import Message, NewMessage, Status, Transition
from sms_dispatch.ports import Page, SchedulerState

LEASE_EXPIRED = "lease expired (worker stopped or crashed mid-send)"

_m = messages
_live = _m.c.deleted_at.is_(None)

# SQLite: the due rows, forced onto the partial index. After ANALYZE on an all-PENDING table
# SQLite would otherwise scan by rowid on every claim (see MEASUREMENTS.md).
_SQLITE_DUE_IDS = (
    text(
        f"SELECT id FROM messages INDEXED BY {DUE_INDEX}"  # noqa: S608 - a constant index name
        " WHERE status = 'PENDING' AND deleted_at IS NULL AND next_attempt_at <= :now"
        " ORDER BY next_attempt_at, id LIMIT :claim_limit"
    )
    .bindparams(bindparam("now", type_=UtcDateTime()), bindparam("claim_limit", type_=Integer()))
    .columns(_m.c.id)
)

# PostgreSQL: the due rows, locked; rows other claimers hold are skipped. `= ANY(ARRAY(...))`
# keeps the outer UPDATE on the primary key, where `IN (SELECT ...)` scanned the whole table.
_PG_DUE_IDS = (
    select(_m.c.id)
    .where(_m.c.status == PENDING, _live, _m.c.next_attempt_at <= bindparam("now", type_=UtcDateTime()))
    .order_by(_m.c.next_attempt_at, _m.c.id)
    .limit(bindparam("claim_limit", type_=Integer()))
    .with_for_update(skip_locked=True)
)


def _claim_statement(due_ids: Any) -> Update:
    """The claim: move the rows ``due_ids`` selects to SENDING under a lease, counting an attempt."""
    return (
        update(_m)
        .where(due_ids)
        .values(
            status=Status.SENDING.value,
            attempts=_m.c.attempts + 1,
            claim_token=bindparam("claim_token", type_=String()),
            claimed_by=bindparam("claimed_by", type_=String()),
            lease_until=bindparam("lease_until", type_=UtcDateTime()),
            updated_at=bindparam("now", type_=UtcDateTime()),
        )
        .returning(*_m.c)
    )


_CLAIM_PG = _claim_statement(_m.c.id == any_(func.array(_PG_DUE_IDS.scalar_subquery())))
_CLAIM_SQLITE = _claim_statement(_m.c.id.in_(_SQLITE_DUE_IDS))


# The fields of one transition as finish binds them, each with its SQL type.
_FIELDS = ("id", "claim_token", "status", "message_id", "raw_response", "last_error", "sent_at")
_TRANSITION: dict[str, TypeEngine[Any]] = {name: _m.c[name].type for name in (*_FIELDS, "next_attempt_at")}
_TRANSITION["refund"] = Boolean()

# PostgreSQL: a batch of transitions as a derived table `v`, one typed array `all_<field>` each.
_batch = (
    func.unnest(
        *(bindparam(f"all_{name}", type_=postgresql.ARRAY(type_)) for name, type_ in _TRANSITION.items())
    )
    .table_valued(*(column(name, type_) for name, type_ in _TRANSITION.items()))
    .render_derived(name="v")
)

# SQLite: one transition as bound parameters `t_<field>`, applied row by row.
_one = SimpleNamespace(**{name: bindparam(f"t_{name}", type_=type_) for name, type_ in _TRANSITION.items()})

_released = {"lease_until": None, "claim_token": None, "claimed_by": None}


def _finish_statement(v: Any) -> Update:
    """The guarded UPDATE of a finish, taking the transition's fields from ``v``.

    A refund hands back a claim that was never sent: the attempt is undone and the row keeps
    what it had. Any other transition writes its outcome.
    """

    def outcome(name: str) -> Any:
        return case((v.refund, _m.c[name]), else_=getattr(v, name))

    return (
        update(_m)
        .where(_m.c.id == v.id, _m.c.status == SENDING, _m.c.claim_token == v.claim_token)
        .values(
            status=v.status,
            message_id=outcome("message_id"),
            raw_response=outcome("raw_response"),
            last_error=outcome("last_error"),
            sent_at=outcome("sent_at"),
            attempts=case((and_(v.refund, _m.c.attempts > 0), _m.c.attempts - 1), else_=_m.c.attempts),
            next_attempt_at=func.coalesce(v.next_attempt_at, _m.c.next_attempt_at),
            updated_at=bindparam("finished_at", type_=UtcDateTime()),
            **_released,
        )
        .returning(_m.c.id)
    )


_FINISH_BATCH = _finish_statement(_batch.c)
_FINISH_ONE = _finish_statement(_one)


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
        return _from_row(row)

    async def get(self, message_id: UUID) -> Message | None:
        """Return the live message with this id, or None."""
        statement = select(_m).where(_m.c.id == message_id, _live)
        async with self._engine.connect() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else _from_row(row)

    async def claim_due(
        self, *, limit: int, now: datetime, lease_s: float, claim_token: str, claimed_by: str
    ) -> list[Message]:
        """Move up to ``limit`` due rows to SENDING under a lease in one statement; oldest first."""
        if limit <= 0:
            return []
        statement = _CLAIM_PG if self._postgres else _CLAIM_SQLITE
        lease_until = now + timedelta(seconds=lease_s)
        params = {"now": now, "claim_limit": limit, "lease_until": lease_until}
        params |= {"claim_token": claim_token, "claimed_by": claimed_by}
        async with self._engine.begin() as connection:
            rows = (await connection.execute(statement, params)).all()
        # RETURNING promises no order.
        oldest_first = sorted(rows, key=lambda row: (row.next_attempt_at, row.id))
        return [_from_row(row) for row in oldest_first]

    async def finish(self, transitions: Sequence[Transition], *, now: datetime) -> set[UUID]:
        """Apply each transition whose row is still SENDING under its token; return applied ids."""
        if not transitions:
            return set()
        if self._postgres:
            return await self._finish_in_one_statement(transitions, now)
        return await self._finish_row_by_row(transitions, now)

    async def _finish_in_one_statement(self, transitions: Sequence[Transition], now: datetime) -> set[UUID]:
        """Apply a batch of transitions with one ``UPDATE ... FROM unnest(...)`` (PostgreSQL)."""
        each = [_transition_fields(t, now) for t in transitions]
        params: dict[str, Any] = {f"all_{name}": [e[name] for e in each] for name in _TRANSITION}
        async with self._engine.begin() as connection:
            result = await connection.execute(_FINISH_BATCH, {**params, "finished_at": now})
            return {row.id for row in result}

    async def _finish_row_by_row(self, transitions: Sequence[Transition], now: datetime) -> set[UUID]:
        """Apply a batch of transitions one guarded UPDATE each, in one transaction (SQLite)."""
        applied: set[UUID] = set()
        async with self._engine.begin() as connection:
            for t in transitions:
                params = {f"t_{name}": value for name, value in _transition_fields(t, now).items()}
                result = await connection.execute(_FINISH_ONE, {**params, "finished_at": now})
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
                **_released,
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
        return Page(items=[_from_row(row) for row in rows], total=total)

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


def _transition_fields(t: Transition, now: datetime) -> dict[str, Any]:
    """Return the values finish binds for one transition (see ``_TRANSITION``)."""
    return {
        "id": t.id,
        "claim_token": t.claim_token,
        "status": t.status.value,
        "message_id": t.message_id,
        "raw_response": t.raw_response,
        "last_error": t.last_error,
        "sent_at": t.sent_at,
        "next_attempt_at": _next_attempt_at(t, now),
        "refund": t.refund_attempt,
    }


def _next_attempt_at(transition: Transition, now: datetime) -> datetime | None:
    """Return when the row is due next: the given time, else ``now`` for a retry; None keeps it.

    A refunded claim keeps its time, so the row keeps its place at the head of the queue.
    """
    if transition.next_attempt_at is not None:
        return transition.next_attempt_at
    if transition.status is Status.PENDING and not transition.refund_attempt:
        return now
    return None


_MESSAGE_COLUMNS = [field.name for field in fields(Message) if field.name != "status"]


def _from_row(row: Row[Any]) -> Message:
    """Turn one ``messages`` row into a ``Message``."""
    values = row._mapping
    return Message(status=Status(values["status"]), **{name: values[name] for name in _MESSAGE_COLUMNS})
