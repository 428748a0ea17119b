"""Store contract: create and get, rows inserted with plain SQL, idempotent create, soft delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import NewMessage, Status
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject, add, claim, sent, stored


async def test_create_then_get_returns_the_message(subject: Subject, clock: FakeClock) -> None:
    """A created message is returned by get, as create returned it."""
    created = await subject.store.create(NewMessage("+905551111111", "Insider - Project"), now=clock.now())
    assert await subject.store.get(created.id) == created


async def test_create_stores_a_pending_message_due_now(subject: Subject, clock: FakeClock) -> None:
    """A new message is PENDING, never tried, due at its creation time, all times aware UTC."""
    created = await subject.store.create(NewMessage("+905551111111", "hi"), now=clock.now())
    assert (created.status, created.attempts, created.to, created.content) == (
        Status.PENDING,
        0,
        "+905551111111",
        "hi",
    )
    assert created.created_at == created.updated_at == created.next_attempt_at == clock.now()
    assert created.created_at.utcoffset() == timedelta(0)
    assert (created.message_id, created.sent_at, created.claim_token, created.lease_until) == (
        None,
        None,
        None,
        None,
    )


async def test_create_many_stores_every_message_pending_and_checked(
    subject: Subject, clock: FakeClock
) -> None:
    """create_many stores each message of the batch PENDING, due now, validated; returns how many."""
    batch = [NewMessage(f"+90555000000{n}", f"bulk {n}") for n in range(7)]
    assert await subject.store.create_many(batch, now=clock.now()) == 7
    page = await subject.store.list_messages(limit=100)
    assert sorted((m.to, m.content) for m in page.items) == sorted((m.to, m.content) for m in batch)
    assert all(
        (m.status, m.attempts, m.validated, m.next_attempt_at, m.created_at)
        == (Status.PENDING, 0, True, clock.now(), clock.now())
        for m in page.items
    )
    assert (await subject.store.count_by_status())[Status.PENDING] == 7
    assert len({m.id for m in page.items}) == 7


async def test_create_many_of_nothing_stores_nothing(subject: Subject, clock: FakeClock) -> None:
    """An empty batch stores no row and says so."""
    assert await subject.store.create_many([], now=clock.now()) == 0
    assert (await subject.store.count_by_status())[Status.PENDING] == 0


async def test_get_unknown_id_returns_none(subject: Subject) -> None:
    """get of an id that was never stored returns None."""
    assert await subject.store.get(uuid4()) is None


async def test_plain_sql_insert_gets_database_defaults(sql_engine: AsyncEngine) -> None:
    """A row inserted by another program with only "to" and content gets id, status, times."""
    async with sql_engine.begin() as connection:
        result = await connection.execute(
            text("""INSERT INTO messages ("to", content) VALUES ('+905551111111', 'hi') RETURNING id""")
        )
        new_id = UUID(str(result.scalar_one()))
    message = await stored(SqlMessageStore(sql_engine), new_id)
    assert (new_id.version, message.status, message.attempts, message.content) == (4, Status.PENDING, 0, "hi")
    assert message.created_at == message.updated_at == message.next_attempt_at
    assert abs(message.created_at - datetime.now(UTC)) < timedelta(seconds=10)


async def test_plain_sql_insert_is_claimed(sql_engine: AsyncEngine) -> None:
    """A row inserted with plain SQL is claimed by the next claim."""
    store = SqlMessageStore(sql_engine)
    async with sql_engine.begin() as connection:
        await connection.execute(
            text("""INSERT INTO messages ("to", content) VALUES ('+905551111111', 'hi')""")
        )
    now = datetime.now(UTC) + timedelta(seconds=1)
    [row] = await store.claim_due(limit=10, now=now, lease_s=1, claim_token="t", claimed_by="w")
    assert (row.to, row.status, row.attempts) == ("+905551111111", Status.SENDING, 1)


async def test_soft_deleted_row_is_never_claimed(subject: Subject, clock: FakeClock) -> None:
    """A soft-deleted PENDING row is not claimed."""
    first, second = await add(subject.store, clock, 2)
    await subject.soft_delete(first.id, clock.now())
    assert [m.id for m in await claim(subject.store, clock)] == [second.id]


async def test_soft_deleted_row_is_not_returned_by_get(subject: Subject, clock: FakeClock) -> None:
    """get treats a soft-deleted row as absent."""
    [message] = await add(subject.store, clock, 1)
    await subject.soft_delete(message.id, clock.now())
    assert await subject.store.get(message.id) is None


async def test_soft_deleted_row_is_not_listed(subject: Subject, clock: FakeClock) -> None:
    """A soft-deleted SUCCESS row is neither listed nor counted in the total."""
    first, second = await sent(subject.store, clock, 2)
    await subject.soft_delete(first.id, clock.now())
    page = await subject.store.list_sent(page=1, limit=10)
    assert ([m.id for m in page.items], page.total) == ([second.id], 1)


async def test_soft_deleted_row_is_not_counted(subject: Subject, clock: FakeClock) -> None:
    """count_by_status leaves soft-deleted rows out."""
    first, _ = await add(subject.store, clock, 2)
    await subject.soft_delete(first.id, clock.now())
    assert (await subject.store.count_by_status())[Status.PENDING] == 1


async def test_create_idempotent_makes_one_message_per_key(subject: Subject, clock: FakeClock) -> None:
    """The first call with a key creates the message; later calls return it and create nothing."""
    first, created = await subject.store.create_idempotent(
        NewMessage("+905551111111", "hi"), now=clock.now(), key="k-1"
    )
    clock.advance(1)
    again, created_again = await subject.store.create_idempotent(
        NewMessage("+905551111111", "hi"), now=clock.now(), key="k-1"
    )
    assert (created, created_again, again) == (True, False, first)
    assert (first.idempotency_key, first.status, first.created_at) == (
        "k-1",
        Status.PENDING,
        clock.now() - timedelta(seconds=1),
    )
    assert (await subject.store.count_by_status())[Status.PENDING] == 1


async def test_create_idempotent_returns_the_stored_body(subject: Subject, clock: FakeClock) -> None:
    """A second call with the same key and another body returns the first message unchanged."""
    first, _ = await subject.store.create_idempotent(
        NewMessage("+905551111111", "one"), now=clock.now(), key="k"
    )
    other, created = await subject.store.create_idempotent(
        NewMessage("+905552222222", "two"), now=clock.now(), key="k"
    )
    assert (created, other) == (False, first)


async def test_create_idempotent_keys_are_independent(subject: Subject, clock: FakeClock) -> None:
    """Different keys make different messages; plain creates carry no key."""
    a, _ = await subject.store.create_idempotent(NewMessage("+905551111111", "hi"), now=clock.now(), key="a")
    b, _ = await subject.store.create_idempotent(NewMessage("+905551111111", "hi"), now=clock.now(), key="b")
    plain = await subject.store.create(NewMessage("+905551111111", "hi"), now=clock.now())
    assert len({a.id, b.id, plain.id}) == 3
    assert plain.idempotency_key is None
    assert await subject.store.get(a.id) == a


async def test_concurrent_idempotent_creates_make_one_row(
    two_engines: list[AsyncEngine], clock: FakeClock
) -> None:
    """Many instances creating with one key at once make one row, and all return it."""
    stores = [SqlMessageStore(engine) for engine in two_engines] * 5
    new = NewMessage("+905551111111", "hi")
    results = await asyncio.gather(*(s.create_idempotent(new, now=clock.now(), key="race") for s in stores))
    assert len({message.id for message, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 9 + [True]
    assert (await stores[0].count_by_status())[Status.PENDING] == 1
