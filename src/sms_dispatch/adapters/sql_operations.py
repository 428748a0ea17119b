"""The store's operator side on SQLAlchemy Core: idempotent creation, attempt history, retry and
cancel guarded by the current status, and the fleet's instance list.

``SqlOperations`` is a part of ``SqlMessageStore`` kept in its own module; every state change
here names the status it expects in its WHERE clause, so two racing actions cannot both win.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import ColumnElement, ScalarSelect, any_, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_column_limits import raise_if_too_long
from sms_dispatch.adapters.sql_rows import attempt_from_row, from_row
from sms_dispatch.adapters.tables import HAS_IDEMPOTENCY_KEY, instances, message_attempts, messages
from sms_dispatch.domain import AttemptRecord, Message, NewMessage, Status
from sms_dispatch.ports import InstanceInfo, MessageFilter

_m = messages
_live = _m.c.deleted_at.is_(None)
_RETRYABLE_STATUSES = (Status.FAILED.value, Status.CANCELLED.value)
_IDEMPOTENT_TRIES = 3


class SqlOperations:
    """The operator-facing methods of ``SqlMessageStore``."""

    _engine: AsyncEngine
    _postgres: bool

    def _insert(self) -> Any:
        return postgresql.insert if self._postgres else sqlite.insert

    async def create_idempotent(
        self, message: NewMessage, *, now: datetime, key: str
    ) -> tuple[Message, bool]:
        """Insert a PENDING message under ``key`` unless one exists (``ON CONFLICT DO NOTHING``)."""
        statement = (
            self._insert()(_m)
            .values(
                id=uuid4(),
                to=message.to,
                content=message.content,
                status=Status.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                idempotency_key=key,
                validated=True,
            )
            .on_conflict_do_nothing(index_elements=[_m.c.idempotency_key], index_where=HAS_IDEMPOTENCY_KEY)
            .returning(*_m.c)
        )
        existing = select(_m).where(_m.c.idempotency_key == key)
        for _ in range(_IDEMPOTENT_TRIES):
            async with self._engine.begin() as connection:
                try:
                    row = (await connection.execute(statement)).one_or_none()
                except DBAPIError as error:
                    raise_if_too_long(error, message)
                    raise
                if row is not None:
                    return from_row(row), True
                # The key is taken; on PostgreSQL the INSERT waited for its owner to commit.
                found = (await connection.execute(existing)).one_or_none()
            if found is not None:
                return from_row(found), False
            # Its owner was deleted (retention) between the two statements: the key is free again.
        raise RuntimeError(f"could not create or find the message with idempotency key {key!r}")

    async def history(self, message_id: UUID) -> list[AttemptRecord]:
        """Return the message's attempt records in the order they were recorded."""
        a = message_attempts
        statement = select(a).where(a.c.message_id == message_id).order_by(a.c.id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [attempt_from_row(row) for row in rows]

    async def retry(self, message_id: UUID, *, now: datetime) -> Message | None:
        """Return a live FAILED or CANCELLED message to PENDING, due now, attempts 0."""
        statement = (
            update(_m)
            .where(_m.c.id == message_id, _live, _m.c.status.in_(_RETRYABLE_STATUSES))
            .values(_replayed(now))
            .returning(*_m.c)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else from_row(row)

    async def retry_batch(
        self, matching: MessageFilter, *, now: datetime, after: UUID | None, limit: int
    ) -> list[UUID]:
        """Retry up to ``limit`` matching live FAILED/CANCELLED messages after ``after``, by id."""
        status = matching.status or Status.FAILED
        if status.value not in _RETRYABLE_STATUSES:
            raise ValueError(f"only FAILED or CANCELLED messages can be retried, not {status.value}")
        if limit <= 0:
            return []
        conditions = [_live, _m.c.status == status.value, *_filtered(matching)]
        if after is not None:
            conditions.append(_m.c.id > after)
        chosen = select(_m.c.id).where(*conditions).order_by(_m.c.id).limit(limit)
        if self._postgres:
            # Locked and skipped like a claim; `= ANY(ARRAY(...))` keeps the UPDATE on the key.
            picked = _m.c.id == any_(func.array(chosen.with_for_update(skip_locked=True).scalar_subquery()))
        else:
            picked = _m.c.id.in_(chosen)
        statement = (
            update(_m).where(picked, _m.c.status == status.value).values(_replayed(now)).returning(_m.c.id)
        )
        async with self._engine.begin() as connection:
            ids = list((await connection.execute(statement)).scalars())
        return sorted(ids)

    async def cancel(self, message_id: UUID, *, now: datetime) -> Message | None:
        """Move a live PENDING message to CANCELLED; None if it is not PENDING."""
        statement = (
            update(_m)
            .where(_m.c.id == message_id, _live, _m.c.status == Status.PENDING.value)
            .values(status=Status.CANCELLED.value, updated_at=now)
            .returning(*_m.c)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).one_or_none()
        return None if row is None else from_row(row)

    async def heartbeat(self, instance: InstanceInfo) -> None:
        """Insert or update the instance's row by name."""
        values = {
            "name": instance.name,
            "host": instance.host,
            "pid": instance.pid,
            "version": instance.version,
            "started_at": instance.started_at,
            "last_heartbeat_at": instance.last_heartbeat_at,
        }
        statement = (
            self._insert()(instances)
            .values(**values)
            .on_conflict_do_update(index_elements=[instances.c.name], set_=values)
        )
        async with self._engine.begin() as connection:
            await connection.execute(statement)

    async def remove_instance(self, name: str) -> None:
        """Delete the instance's row, if any."""
        async with self._engine.begin() as connection:
            await connection.execute(delete(instances).where(instances.c.name == name))

    async def live_instances(self, *, seen_since: datetime) -> list[InstanceInfo]:
        """Return the instances whose last heartbeat is at or after ``seen_since``, by name."""
        i = instances.c
        statement = select(instances).where(i.last_heartbeat_at >= seen_since).order_by(i.name)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [
            InstanceInfo(r.name, r.host, r.pid, r.version, r.started_at, r.last_heartbeat_at) for r in rows
        ]


def _replayed(now: datetime) -> dict[str, Any]:
    """The values a replay sets: PENDING, due now, attempts from zero; the last error stays."""
    return {
        "status": Status.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "updated_at": now,
        "lease_until": None,
        "claim_token": None,
        "claimed_by": None,
    }


def _last_error_class() -> ScalarSelect[str | None]:
    """The error class of the message's last applied attempt: a late answer (not applied) did not
    decide the message's state. One probe of the attempts index per message."""
    a = message_attempts.c
    last = select(a.error_class).where(a.message_id == _m.c.id, a.applied).order_by(a.id.desc()).limit(1)
    return last.scalar_subquery()


def _filtered(matching: MessageFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a filter's recipient, creation-time bounds and last error class."""
    conditions: list[ColumnElement[bool]] = []
    if matching.error_class is not None:
        conditions.append(_last_error_class() == matching.error_class)
    if matching.to is not None:
        conditions.append(_m.c.to == matching.to)
    if matching.since is not None:
        conditions.append(_m.c.created_at >= matching.since)
    if matching.until is not None:
        conditions.append(_m.c.created_at < matching.until)
    return conditions
