"""A message is checked once: on the way in through the service, or before the first send of a
row inserted (or edited) by hand with plain SQL. Migration 0006, on PostgreSQL and SQLite."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import NewMessage, Status
from tests.fakes import RecordingSmsProvider


def deliverer(store: SqlMessageStore, provider: RecordingSmsProvider) -> Deliverer:
    """A deliverer sending one message per batch to ``provider``."""
    clock = SystemClock()
    return Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=10),
        instance_name="test",
    )


async def validated(engine: AsyncEngine, message_id: UUID) -> bool:
    """Read the row's ``validated`` column."""
    async with engine.connect() as connection:
        value = (await connection.execute(text("SELECT validated FROM messages WHERE id = :id"), {"id": str(message_id) if engine.dialect.name == "sqlite" else message_id})).scalar_one()  # fmt: skip
    return bool(value)


async def test_service_rows_are_marked_and_hand_rows_are_not(engine: AsyncEngine) -> None:
    """``create`` stores a checked row; a plain SQL insert gets ``validated = false``."""
    store = SqlMessageStore(engine)
    created = await store.create(NewMessage(to="+905551111111", content="hello"), now=SystemClock().now())
    async with engine.begin() as connection:
        await connection.execute(
            text("""INSERT INTO messages ("to", content) VALUES ('+905552222222', 'hi')""")
        )
        hand_id = (await connection.execute(text("""SELECT id FROM messages WHERE "to" = '+905552222222'"""))).scalar_one()  # fmt: skip
    assert created.validated and await validated(engine, created.id)
    assert not await validated(engine, UUID(str(hand_id)))


async def test_a_hand_edit_of_a_checked_row_is_checked_again(engine: AsyncEngine) -> None:
    """A checked row whose recipient is changed by hand to a bad number fails before any send;
    an edit of other columns keeps the mark."""
    store = SqlMessageStore(engine)
    good = await store.create(NewMessage(to="+905551111111", content="hello"), now=SystemClock().now())
    edited = await store.create(NewMessage(to="+905553333333", content="hello"), now=SystemClock().now())
    async with engine.begin() as connection:
        params = {"good": str(good.id), "edited": str(edited.id)}
        if engine.dialect.name == "postgresql":
            params = {"good": good.id, "edited": edited.id}  # type: ignore[dict-item]
            # By hand: another program than the service (whose statements never edit "to").
            await connection.execute(text("SET LOCAL application_name = 'psql'"))
        await connection.execute(text("""UPDATE messages SET "to" = '12345' WHERE id = :edited"""), params)
        await connection.execute(text("UPDATE messages SET attempts = 0 WHERE id = :good"), params)
    assert not await validated(engine, edited.id)
    assert await validated(engine, good.id)

    provider = RecordingSmsProvider()
    await deliverer(store, provider).deliver_batch()
    assert [m.id for m in provider.sent] == [good.id]
    failed = await store.get(edited.id)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.last_error is not None and failed.last_error.startswith("invalid message: to:")


async def test_a_hand_inserted_row_is_normalised_before_it_is_sent(engine: AsyncEngine) -> None:
    """An unchecked row with spaces around a valid number is sent in E.164 form."""
    async with engine.begin() as connection:
        await connection.execute(
            text("""INSERT INTO messages ("to", content) VALUES (' +905554444444 ', ' hi ')""")
        )
    provider = RecordingSmsProvider()
    await deliverer(SqlMessageStore(engine), provider).deliver_batch()
    assert [(m.to, m.content) for m in provider.sent] == [("+905554444444", "hi")]
