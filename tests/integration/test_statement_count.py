"""O(1) SQL per batch: a batch of 1,000 issues exactly the statements a batch of 10 does.

Statements are counted as the database driver runs them (SQLAlchemy's ``before_cursor_execute``),
an ``executemany`` counting once per parameter set, since that is what the database executes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import messages
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import BatchReport, Deliverer, DeliveryPolicy
from sms_dispatch.domain import Outcome, SendResult
from tests.fakes import RecordingSmsProvider

SIZES = (10, 1000)


class StatementCounter:
    """Counts the statements the driver executes while ``on`` is set."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.on = False
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        if self.on:
            self.statements += [statement.split(None, 1)[0]] * (len(parameters) if many else 1)


async def seed(engine: AsyncEngine, count: int) -> None:
    """Insert ``count`` due PENDING rows in one statement."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    rows = [
        {"id": uuid4(), "to": "+905551111111", "content": f"m{i}", "next_attempt_at": now, "created_at": now}
        for i in range(count)
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(messages), rows)


def deliverer(engine: AsyncEngine, size: int, provider: RecordingSmsProvider) -> Deliverer:
    """A deliverer claiming ``size`` rows a batch."""
    clock = SystemClock()
    return Deliverer(
        store=SqlMessageStore(engine),
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=size, max_workers=64),
        instance_name="count",
    )


async def count_batch(engine: AsyncEngine, counter: StatementCounter, size: int) -> list[str]:
    """Deliver one batch of ``size`` (every outcome kind in it); return the statements it issued."""
    await seed(engine, size)
    provider = RecordingSmsProvider().then(
        SendResult(Outcome.RETRYABLE, error="busy", retry_after_s=60),
        SendResult(Outcome.PERMANENT, http_status=400, error="rejected"),
    )
    counter.statements.clear()
    counter.on = True
    report = await deliverer(engine, size, provider).deliver_batch()
    counter.on = False
    assert (report.claimed, report.delivered, report.retried, report.failed) == (size, size - 2, 1, 1)
    return list(counter.statements)


async def test_a_batch_issues_a_fixed_number_of_statements(engine: AsyncEngine) -> None:
    """Claim, finish and attempt history of 1,000 messages take the statements 10 messages take."""
    counter = StatementCounter(engine)
    await count_batch(engine, counter, 2)  # warm up: connections opened, types introspected
    counts = {size: await count_batch(engine, counter, size) for size in SIZES}
    assert counts[10] == counts[1000]
    assert len(counts[1000]) <= 12, counts[1000]


async def test_the_continuous_pump_records_in_bulk(engine: AsyncEngine) -> None:
    """Recording 1,000 results is the same statements as recording 10 (one finish, one history)."""
    counter = StatementCounter(engine)
    counts = {}
    for size in SIZES:
        await seed(engine, size)
        provider = RecordingSmsProvider()
        sender = deliverer(engine, size, provider)
        token, claimed = await sender.claim(size)
        sends = [await sender.send_one(message, token) for message in claimed]
        counter.statements.clear()
        counter.on = True
        report = BatchReport()
        await sender.record(sends, report)
        counter.on = False
        assert report.delivered == size
        counts[size] = list(counter.statements)
    assert counts[10] == counts[1000]
    assert len(counts[1000]) <= 6, counts[1000]
