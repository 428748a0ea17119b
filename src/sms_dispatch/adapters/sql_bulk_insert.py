"""Many new PENDING messages at once (``seed``): PostgreSQL's COPY, SQLite's multi-row INSERT.

A message at a time costs a round trip, a commit and a firing of the statement triggers (the
kept counts, the new-message NOTIFY) per row: 200,000 rows took minutes. Here a batch is one
statement: COPY on PostgreSQL (binary rows, about half the client and server CPU of a multi-row
INSERT), a multi-row INSERT on SQLite (SQLAlchemy's insertmanyvalues, a thousand rows a
statement). Either way the batch is stored whole or not at all, so the count is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import uuid4

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.tables import messages
from sms_dispatch.domain import NewMessage, Status

_COLUMNS = (
    "id",
    "to",
    "content",
    "status",
    "attempts",
    "validated",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


async def insert_pending(engine: AsyncEngine, batch: Sequence[NewMessage], *, now: datetime) -> int:
    """Store ``batch`` as PENDING messages due ``now``, marked validated; return how many were stored."""
    if not batch:
        return 0
    pending = (Status.PENDING.value, 0, True, now, now, now)
    records = [(uuid4(), m.to, m.content, *pending) for m in batch]
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None  # an open pooled connection always has its asyncpg connection
            # One statement: atomic without a transaction of its own. Its tag is "COPY <rows>".
            tag: str = await driver.copy_records_to_table(messages.name, records=records, columns=_COLUMNS)
        return int(tag.rsplit(" ", 1)[1])
    rows = [dict(zip(_COLUMNS, record, strict=True)) for record in records]
    # RETURNING makes SQLAlchemy send multi-row INSERTs (insertmanyvalues); the ids count the rows.
    async with engine.begin() as connection:
        stored = (await connection.execute(insert(messages).returning(messages.c.id), rows)).all()
    return len(stored)
