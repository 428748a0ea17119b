"""O(1) SQL per group: a finish of 1,000 results issues exactly the statements a finish of 10 does.

A batch's results are recorded as they complete, one finish per group-commit window, so a
batch of 1,000 may take several finishes; each is the same few statements whatever its size,
and the rest of the batch (rescue, claim) is the statements a batch of 10 issues.
Statements are counted as the database driver runs them (SQLAlchemy's ``before_cursor_execute``),
an ``executemany`` counting once per parameter set, since that is what the database executes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
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
from sms_dispatch.domain import AttemptRecord, Outcome, SendResult, Transition
from tests.fakes import RecordingSmsProvider

SIZES = (10, 1000)
_finish_number: ContextVar[int | None] = ContextVar("finish_number", default=None)


class StatementCounter:
    """Counts the statements the driver executes while ``on`` is set, each finish's apart."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.on = False
        self.statements: list[str] = []
        """The statements outside any finish."""
        self.finishes: dict[int, list[str]] = {}
        """The statements of each finish, by its number (finishes may overlap in time)."""
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def clear(self) -> None:
        """Forget what was counted."""
        self.statements.clear()
        self.finishes.clear()

    def _count(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool
    ) -> None:
        if self.on:
            number = _finish_number.get()
            into = self.statements if number is None else self.finishes.setdefault(number, [])
            into += [statement.split(None, 1)[0]] * (len(parameters) if many else 1)


class FinishCountingStore(SqlMessageStore):
    """A store that numbers its finishes, so the counter can tell their statements apart."""

    finished = 0

    async def finish(
        self, transitions: Sequence[Transition], *, now: datetime, attempts: Sequence[AttemptRecord] = ()
    ) -> set[Any]:
        """Finish as the store does, with this finish's number in the context."""
        self.finished += 1
        token = _finish_number.set(self.finished)
        try:
            return await super().finish(transitions, now=now, attempts=attempts)
        finally:
            _finish_number.reset(token)


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
        store=FinishCountingStore(engine),
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=size, max_workers=64),
        instance_name="count",
    )


async def count_batch(
    engine: AsyncEngine, counter: StatementCounter, size: int
) -> tuple[list[str], list[list[str]]]:
    """Deliver one batch of ``size`` (every outcome kind in it); return its statements outside
    the finishes, and each finish's."""
    await seed(engine, size)
    # 64 sends at a time, 20 ms each: a batch of 1,000 takes 16 waves, about 320 ms, so several
    # group-commit windows.
    provider = RecordingSmsProvider(delay_s=0.02).then(
        SendResult(Outcome.RETRYABLE, error="busy", retry_after_s=60),
        SendResult(Outcome.PERMANENT, http_status=400, error="rejected"),
    )
    counter.clear()
    counter.on = True
    report = await deliverer(engine, size, provider).deliver_batch()
    counter.on = False
    assert (report.claimed, report.delivered, report.retried, report.failed) == (size, size - 2, 1, 1)
    return list(counter.statements), list(counter.finishes.values())


async def test_each_finish_of_a_batch_issues_a_fixed_number_of_statements(engine: AsyncEngine) -> None:
    """A batch of 1,000 is the statements of a batch of 10 plus the same few per extra finish."""
    counter = StatementCounter(engine)
    await count_batch(engine, counter, 2)  # warm up: connections opened, types introspected
    (small, small_finishes), (large, large_finishes) = [await count_batch(engine, counter, n) for n in SIZES]
    assert small == large, "claim and rescue grew with the batch"
    assert len(large) <= 6, large
    assert len(small_finishes) == 1
    assert len(large_finishes) >= 2, "the batch was recorded at its end only"
    assert all(finish == small_finishes[0] for finish in large_finishes), large_finishes
    assert len(small_finishes[0]) <= 6, small_finishes[0]
    print(f"\nbatch of 1,000: {large} and {len(large_finishes)} finishes of {small_finishes[0]}")


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
        counter.clear()
        counter.on = True
        report = BatchReport()
        await sender.record(sends, report)
        counter.on = False
        assert report.delivered == size
        counts[size] = [s for finish in counter.finishes.values() for s in finish]
    assert counts[10] == counts[1000]
    assert len(counts[1000]) <= 6, counts[1000]
