"""The store contract: one suite run against every store (in-memory, SQLite, PostgreSQL).

The in-memory store is held to exactly what the SQL store does, so unit tests of the core that
use it cannot drift from production behaviour. Behaviour only SQL databases have (rows inserted
by other programs, several instances at once) runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlalchemy import URL, func, make_url, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.adapters.sql_statements import RESCUE_LOCK_KEY
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import messages
from sms_dispatch.domain import AttemptOutcome, AttemptRecord, Message, NewMessage, Status, Transition
from sms_dispatch.ports import InstanceInfo, MessageFilter
from tests.conftest import FakeClock

LEASE_S = 30.0
LEASE_EXPIRED = "lease expired (worker stopped or crashed mid-send)"
POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres)

Store = SqlMessageStore | InMemoryMessageStore


@dataclass
class Subject:
    """A store under test and a way to soft-delete a row as the Go service does."""

    store: Store
    soft_delete: Callable[[UUID, datetime], Awaitable[None]]


def sqlite_url(path: Path) -> URL:
    """Return the async URL of a SQLite file."""
    return URL.create("sqlite+aiosqlite", database=str(path))


def async_pg_url(plain: str) -> URL:
    """Return the asyncpg URL of a plain ``postgresql://`` URL."""
    return make_url(plain).set(drivername="postgresql+asyncpg")


async def migrated_engine(url: URL) -> AsyncEngine:
    """Return an engine on ``url`` with the schema migrated."""
    engine = create_engine(url, pool_size=4)
    await migrate(engine)
    return engine


def _url_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> URL | None:
    if kind == "memory":
        return None
    if kind == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    return async_pg_url(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL | None:
    """Each kind of store's database: none (in-memory), a SQLite file, a fresh PostgreSQL."""
    return _url_of(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", POSTGRES])
def sql_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL | None:
    """Each SQL database: a SQLite file, a fresh PostgreSQL."""
    return _url_of(request.param, request, tmp_path)


@asynccontextmanager
async def open_subject(url: URL | None) -> AsyncIterator[Subject]:
    """Open a fresh, empty store on ``url`` (in-memory when None)."""
    if url is None:
        fake = InMemoryMessageStore()

        async def forget(message_id: UUID, now: datetime) -> None:
            fake.soft_delete(message_id, now=now)

        yield Subject(fake, forget)
        return
    engine = await migrated_engine(url)

    async def soft_delete(message_id: UUID, now: datetime) -> None:
        # What the Go service's GORM soft delete does to a row.
        statement = update(messages).where(messages.c.id == message_id).values(deleted_at=now)
        async with engine.begin() as connection:
            await connection.execute(statement)

    try:
        yield Subject(SqlMessageStore(engine), soft_delete)
    finally:
        await engine.dispose()


@pytest.fixture
async def subject(database_url: URL | None) -> AsyncIterator[Subject]:
    """A fresh, empty store of each kind."""
    async with open_subject(database_url) as opened:
        yield opened


@pytest.fixture
async def sql_engine(sql_database_url: URL) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on each SQL database."""
    engine = await migrated_engine(sql_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def two_engines(sql_engine: AsyncEngine) -> AsyncIterator[list[AsyncEngine]]:
    """Two engines (two connection pools, as two instances have) on one migrated database."""
    second = create_engine(sql_engine.url, pool_size=4)
    yield [sql_engine, second]
    await second.dispose()


async def add(store: Store, clock: FakeClock, count: int = 1, *, gap_s: float = 1.0) -> list[Message]:
    """Create ``count`` messages, ``gap_s`` apart on the clock; return them oldest first."""
    created = []
    for n in range(count):
        created.append(await store.create(NewMessage(f"+9055511{n:05d}", f"hello {n}"), now=clock.now()))
        clock.advance(gap_s)
    return created


async def claim(store: Store, clock: FakeClock, limit: int = 100, claimant: str = "token-a") -> list[Message]:
    """Claim due messages at the clock's time under the claim token ``claimant``."""
    return await store.claim_due(
        limit=limit, now=clock.now(), lease_s=LEASE_S, claim_token=claimant, claimed_by="worker-a"
    )


async def sent(store: Store, clock: FakeClock, count: int) -> list[Message]:
    """Create, claim and deliver ``count`` messages, one second apart; return them as stored."""
    await add(store, clock, count)
    transitions = []
    for message in await claim(store, clock):
        clock.advance(1)
        transitions.append(
            Transition(message.id, "token-a", Status.SUCCESS, f"p-{message.id}", sent_at=clock.now())
        )
    await store.finish(transitions, now=clock.now())
    return [m for m in [await store.get(t.id) for t in transitions] if m is not None]


async def stored(store: Store, message_id: UUID) -> Message:
    """Return the stored message, which must exist."""
    message = await store.get(message_id)
    assert message is not None
    return message


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


async def test_claim_returns_oldest_first_up_to_limit(subject: Subject, clock: FakeClock) -> None:
    """A claim takes the oldest due messages first, no more than the limit."""
    created = await add(subject.store, clock, 5)
    claimed = await claim(subject.store, clock, limit=3)
    assert [m.id for m in claimed] == [m.id for m in created[:3]]


async def test_claim_marks_rows_sending_with_an_attempt_and_a_lease(
    subject: Subject, clock: FakeClock
) -> None:
    """Claimed rows are SENDING, have one more attempt, the token and a lease of lease_s."""
    await add(subject.store, clock, 2)
    claimed = await claim(subject.store, clock, claimant="tok-1")
    assert {(m.status, m.attempts, m.claim_token) for m in claimed} == {(Status.SENDING, 1, "tok-1")}
    assert {m.lease_until for m in claimed} == {clock.now() + timedelta(seconds=LEASE_S)}
    assert [await subject.store.get(m.id) for m in claimed] == claimed


async def test_second_claim_never_returns_a_claimed_row(subject: Subject, clock: FakeClock) -> None:
    """Rows already claimed are not claimed again while SENDING."""
    await add(subject.store, clock, 3)
    first = await claim(subject.store, clock, limit=2)
    second = await claim(subject.store, clock, limit=10, claimant="token-b")
    assert len(second) == 1
    assert not {m.id for m in first} & {m.id for m in second}
    assert await claim(subject.store, clock, claimant="token-c") == []


async def test_claim_skips_rows_not_yet_due(subject: Subject, clock: FakeClock) -> None:
    """A row whose next attempt is in the future is not claimed."""
    [message] = await add(subject.store, clock, 1, gap_s=0)
    [claimed] = await claim(subject.store, clock)
    retry_at = clock.now() + timedelta(seconds=60)
    await subject.store.finish(
        [Transition(message.id, "token-a", Status.PENDING, next_attempt_at=retry_at)], now=clock.now()
    )
    clock.advance(59)
    assert await claim(subject.store, clock) == []
    clock.advance(1)
    assert [m.id for m in await claim(subject.store, clock)] == [claimed.id]


async def test_claim_with_zero_limit_claims_nothing(subject: Subject, clock: FakeClock) -> None:
    """A claim with limit 0 returns nothing and changes nothing."""
    [message] = await add(subject.store, clock, 1)
    assert await claim(subject.store, clock, limit=0) == []
    assert await subject.store.get(message.id) == message


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


async def test_finish_applies_with_the_right_token(subject: Subject, clock: FakeClock) -> None:
    """A transition under the row's token is applied and releases the claim."""
    [message] = await add(subject.store, clock, 1, gap_s=0)
    await claim(subject.store, clock)
    clock.advance(2)
    done = Transition(message.id, "token-a", Status.SUCCESS, "p-1", '{"ok":1}', sent_at=clock.now())
    assert await subject.store.finish([done], now=clock.now()) == {message.id}
    row = await stored(subject.store, message.id)
    assert (row.status, row.message_id, row.raw_response, row.sent_at) == (
        Status.SUCCESS,
        "p-1",
        '{"ok":1}',
        clock.now(),
    )
    assert (row.claim_token, row.lease_until, row.updated_at) == (None, None, clock.now())
    assert (row.attempts, row.next_attempt_at) == (1, message.next_attempt_at)


async def test_finish_refuses_a_wrong_token(subject: Subject, clock: FakeClock) -> None:
    """A transition under another token leaves the row as it is."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    late = Transition(message.id, "someone-else", Status.FAILED, last_error="late")
    assert await subject.store.finish([late], now=clock.now()) == set()
    assert await subject.store.get(message.id) == claimed


async def test_finish_refuses_a_row_not_sending(subject: Subject, clock: FakeClock) -> None:
    """A transition for a row that is no longer SENDING (finished already) is refused."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    await subject.store.finish([Transition(message.id, "token-a", Status.FAILED)], now=clock.now())
    again = Transition(message.id, "token-a", Status.SUCCESS, "p-2", sent_at=clock.now())
    assert await subject.store.finish([again], now=clock.now()) == set()
    row = await stored(subject.store, message.id)
    assert row.status is Status.FAILED


async def test_finish_returns_exactly_the_applied_ids(subject: Subject, clock: FakeClock) -> None:
    """In a mixed batch only the transitions still holding their claim are applied."""
    first, second, third = await add(subject.store, clock, 3)
    await claim(subject.store, clock)
    batch = [
        Transition(first.id, "token-a", Status.SUCCESS, "p-1", sent_at=clock.now()),
        Transition(second.id, "wrong", Status.SUCCESS, "p-2", sent_at=clock.now()),
        Transition(third.id, "token-a", Status.FAILED, last_error="400 bad number"),
        Transition(uuid4(), "token-a", Status.SUCCESS),
    ]
    assert await subject.store.finish(batch, now=clock.now()) == {first.id, third.id}
    assert await subject.store.finish([], now=clock.now()) == set()


async def test_finish_retry_is_due_at_the_given_time(subject: Subject, clock: FakeClock) -> None:
    """A PENDING transition with a time makes the row due then, keeping the error."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    retry_at = clock.now() + timedelta(seconds=90)
    retry = Transition(message.id, "token-a", Status.PENDING, last_error="503", next_attempt_at=retry_at)
    await subject.store.finish([retry], now=clock.now())
    row = await stored(subject.store, message.id)
    assert (row.status, row.next_attempt_at, row.last_error, row.attempts) == (
        Status.PENDING,
        retry_at,
        "503",
        1,
    )


async def test_finish_retry_without_a_time_is_due_now(subject: Subject, clock: FakeClock) -> None:
    """A PENDING transition without a time makes the row due at the finish time."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    clock.advance(5)
    await subject.store.finish([Transition(message.id, "token-a", Status.PENDING)], now=clock.now())
    row = await stored(subject.store, message.id)
    assert (row.status, row.next_attempt_at) == (Status.PENDING, clock.now())


async def test_finish_refund_hands_the_claim_back_untouched(subject: Subject, clock: FakeClock) -> None:
    """A refund returns the row to PENDING as it was before the claim: attempt undone, same place."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    retry_at = clock.now() + timedelta(seconds=5)
    failed_once = Transition(
        message.id, "token-a", Status.PENDING, None, "busy", "503", next_attempt_at=retry_at
    )
    await subject.store.finish([failed_once], now=clock.now())
    clock.advance(5)
    [before] = await claim(subject.store, clock, claimant="token-b")
    refund = Transition(message.id, "token-b", Status.PENDING, refund_attempt=True)
    assert await subject.store.finish([refund], now=clock.now()) == {message.id}
    row = await stored(subject.store, message.id)
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.PENDING, 1, before.next_attempt_at)
    assert (row.last_error, row.raw_response, row.claim_token, row.lease_until) == ("503", "busy", None, None)
    assert [m.id for m in await claim(subject.store, clock, claimant="token-c")] == [message.id]


async def test_finish_refund_of_a_first_claim_leaves_no_attempt(subject: Subject, clock: FakeClock) -> None:
    """A refunded first claim leaves the row never tried, as PENDING."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    await subject.store.finish(
        [Transition(message.id, "token-a", Status.PENDING, refund_attempt=True)], now=clock.now()
    )
    row = await stored(subject.store, message.id)
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.PENDING, 0, message.next_attempt_at)


async def test_rescue_returns_an_expired_lease_to_pending(subject: Subject, clock: FakeClock) -> None:
    """A SENDING row past its lease goes back to PENDING, due after the retry delay."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    clock.advance(LEASE_S + 1)
    assert await subject.store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=10) == 1
    row = await stored(subject.store, message.id)
    assert (row.status, row.last_error, row.next_attempt_at) == (
        Status.PENDING,
        LEASE_EXPIRED,
        clock.now() + timedelta(seconds=10),
    )
    assert (row.claim_token, row.lease_until, row.attempts) == (None, None, 1)


async def test_rescue_fails_a_row_out_of_attempts(subject: Subject, clock: FakeClock) -> None:
    """A SENDING row past its lease that used its last attempt goes to FAILED."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    clock.advance(LEASE_S + 1)
    assert await subject.store.rescue_expired(now=clock.now(), max_attempts=1, retry_delay_s=10) == 1
    row = await stored(subject.store, message.id)
    assert (row.status, row.last_error, row.claim_token) == (Status.FAILED, LEASE_EXPIRED, None)


async def test_rescue_leaves_live_leases_alone(subject: Subject, clock: FakeClock) -> None:
    """A SENDING row whose lease has not ended, and other statuses, are not rescued."""
    await add(subject.store, clock, 2)
    [claimed] = await claim(subject.store, clock, limit=1)
    clock.advance(LEASE_S - 1)
    assert await subject.store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=1) == 0
    assert await subject.store.get(claimed.id) == claimed


async def test_rescued_row_is_claimed_again_as_a_new_attempt(subject: Subject, clock: FakeClock) -> None:
    """After a rescue the row is claimable once its retry time comes, counting attempt two."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    clock.advance(LEASE_S + 1)
    await subject.store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=10)
    clock.advance(10)
    [again] = await claim(subject.store, clock, claimant="token-b")
    assert (again.id, again.attempts, again.claim_token) == (message.id, 2, "token-b")


async def test_list_sent_is_newest_first(subject: Subject, clock: FakeClock) -> None:
    """The sent listing shows SUCCESS rows by sent_at, newest first."""
    delivered = await sent(subject.store, clock, 3)
    page = await subject.store.list_sent(page=1, limit=10)
    assert [m.id for m in page.items] == [m.id for m in reversed(delivered)]
    assert page.items == list(reversed(delivered))


async def test_list_sent_pages_and_total(subject: Subject, clock: FakeClock) -> None:
    """Pages are cut by limit from page 1 on; total counts every SUCCESS row."""
    newest_first = list(reversed(await sent(subject.store, clock, 5)))
    pages = [await subject.store.list_sent(page=n, limit=2) for n in (1, 2, 3, 4)]
    assert [[m.id for m in p.items] for p in pages] == [
        [m.id for m in newest_first[0:2]],
        [m.id for m in newest_first[2:4]],
        [newest_first[4].id],
        [],
    ]
    assert {p.total for p in pages} == {5}


async def test_list_sent_leaves_out_other_statuses(subject: Subject, clock: FakeClock) -> None:
    """PENDING, SENDING and FAILED rows are not in the sent listing."""
    await sent(subject.store, clock, 1)
    first, _, _ = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(first.id, "token-a", Status.FAILED)], now=clock.now())
    assert (await subject.store.list_sent(page=1, limit=10)).total == 1


async def test_count_by_status_lists_every_status(subject: Subject, clock: FakeClock) -> None:
    """count_by_status has every status, zero where there is none."""
    assert await subject.store.count_by_status() == dict.fromkeys(Status, 0)
    await sent(subject.store, clock, 2)
    first, _, _ = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(first.id, "token-a", Status.FAILED)], now=clock.now())
    assert await subject.store.count_by_status() == {
        Status.PENDING: 1,
        Status.SENDING: 1,
        Status.SUCCESS: 2,
        Status.FAILED: 1,
        Status.CANCELLED: 0,
    }


async def test_scheduler_is_running_on_a_new_store(subject: Subject) -> None:
    """A fresh store's scheduler switch is on, and no slot has been taken."""
    state = await subject.store.scheduler_state()
    assert (state.running, state.last_run_at) == (True, None)


async def test_set_running_round_trips(subject: Subject, clock: FakeClock) -> None:
    """set_running stores the switch and returns it; scheduler_state reads it back."""
    stopped = await subject.store.set_running(False, now=clock.now())
    assert (stopped.running, stopped.updated_at) == (False, clock.now())
    assert await subject.store.scheduler_state() == stopped
    clock.advance(1)
    assert (await subject.store.set_running(True, now=clock.now())).running is True
    assert (await subject.store.scheduler_state()).running is True


async def test_take_batch_slot_grants_once_per_interval(subject: Subject, clock: FakeClock) -> None:
    """A slot is granted, refused until interval_s has passed, then granted again."""
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is True
    assert (await subject.store.scheduler_state()).last_run_at == clock.now()
    clock.advance(119)
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is False
    clock.advance(1)
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is True


async def test_take_batch_slot_never_when_stopped(subject: Subject, clock: FakeClock) -> None:
    """No slot is granted while the switch is off, whatever the interval."""
    await subject.store.set_running(False, now=clock.now())
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=0) is False
    clock.advance(3600)
    assert await subject.store.take_batch_slot(now=clock.now(), interval_s=120) is False


async def test_take_batch_slot_with_zero_interval_always_grants(subject: Subject, clock: FakeClock) -> None:
    """With interval 0 every call gets a slot while running."""
    results = [await subject.store.take_batch_slot(now=clock.now(), interval_s=0) for _ in range(3)]
    assert results == [True, True, True]


async def test_concurrent_claims_never_share_a_row(two_engines: list[AsyncEngine], clock: FakeClock) -> None:
    """Two instances claiming at once over 200 rows split them with no row claimed twice."""
    stores = [SqlMessageStore(engine) for engine in two_engines]
    created = await add(stores[0], clock, 200, gap_s=0.001)

    async def drain(store: SqlMessageStore, token: str) -> list[UUID]:
        ids: list[UUID] = []
        while batch := await claim(store, clock, limit=7, claimant=token):
            ids.extend(m.id for m in batch)
        return ids

    first, second = await asyncio.gather(drain(stores[0], "a"), drain(stores[1], "b"))
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(m.id for m in created)


async def test_concurrent_slot_takers_get_one_slot(two_engines: list[AsyncEngine], clock: FakeClock) -> None:
    """Of many instances asking for the same slot at once, exactly one gets it."""
    stores = [SqlMessageStore(engine) for engine in two_engines] * 4
    granted = await asyncio.gather(*(s.take_batch_slot(now=clock.now(), interval_s=120) for s in stores))
    assert sorted(granted) == [False] * 7 + [True]


# count_sent_since: the dashboard's throughput figures.


async def test_count_sent_since_includes_the_boundary(subject: Subject, clock: FakeClock) -> None:
    """count_sent_since counts SUCCESS rows sent at or after the given time, none before it."""
    delivered = await sent(subject.store, clock, 3)
    sent_times = [m.sent_at for m in delivered if m.sent_at is not None]
    assert [await subject.store.count_sent_since(t) for t in sent_times] == [3, 2, 1]
    assert await subject.store.count_sent_since(sent_times[-1] + timedelta(microseconds=1)) == 0


async def test_count_sent_since_leaves_out_unsent_and_deleted_rows(
    subject: Subject, clock: FakeClock
) -> None:
    """PENDING, SENDING, FAILED and soft-deleted rows are not counted as sent."""
    since = clock.now()
    first, _ = await sent(subject.store, clock, 2)
    failed, _, _ = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(failed.id, "token-a", Status.FAILED)], now=clock.now())
    await subject.soft_delete(first.id, clock.now())
    assert await subject.store.count_sent_since(since) == 1


# Upkeep: the queue's lag, retention, readiness and fleet-wide locks (operations).


async def test_oldest_due_at_is_none_without_due_messages(subject: Subject, clock: FakeClock) -> None:
    """oldest_due_at is None on an empty store and when every PENDING row is due later."""
    assert await subject.store.oldest_due_at(clock.now()) is None
    await add(subject.store, clock, 1)
    assert await subject.store.oldest_due_at(clock.now() - timedelta(hours=1)) is None


async def test_oldest_due_at_is_the_earliest_due_pending_row(subject: Subject, clock: FakeClock) -> None:
    """oldest_due_at is the due time of the oldest live PENDING row; claimed and deleted rows don't count."""
    claimed, deleted, waiting, _ = await add(subject.store, clock, 4, gap_s=10)
    await claim(subject.store, clock, limit=1)
    await subject.soft_delete(deleted.id, clock.now())
    assert claimed.next_attempt_at is not None
    assert await subject.store.oldest_due_at(clock.now()) == waiting.next_attempt_at


async def attempt_of(message: Message, clock: FakeClock) -> AttemptRecord:
    """Return a delivered attempt record of ``message`` at the clock's time."""
    return AttemptRecord(message.id, 1, clock.now(), 12.5, AttemptOutcome.DELIVERED, http_status=202)


async def test_prune_sent_deletes_old_success_rows_oldest_first(subject: Subject, clock: FakeClock) -> None:
    """prune_sent deletes SUCCESS rows sent before the cutoff, oldest first, at most ``limit``."""
    old = await sent(subject.store, clock, 3)
    clock.advance(1)
    cutoff = clock.now()
    recent = await sent(subject.store, clock, 1)
    assert await subject.store.prune_sent(before=cutoff, limit=2) == 2
    assert [await subject.store.get(m.id) for m in old[:2]] == [None, None]
    assert await subject.store.prune_sent(before=cutoff, limit=2) == 1
    assert await subject.store.prune_sent(before=cutoff, limit=2) == 0
    assert await subject.store.get(recent[0].id) == recent[0]


async def test_prune_sent_leaves_other_statuses_and_deleted_rows(subject: Subject, clock: FakeClock) -> None:
    """prune_sent never deletes PENDING, SENDING, FAILED or soft-deleted SUCCESS rows."""
    [kept_deleted] = await sent(subject.store, clock, 1)
    await subject.soft_delete(kept_deleted.id, clock.now())
    failed, claimed, pending = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.store.finish([Transition(failed.id, "token-a", Status.FAILED)], now=clock.now())
    clock.advance(3600)
    assert await subject.store.prune_sent(before=clock.now(), limit=100) == 0
    assert [(await stored(subject.store, m.id)).status for m in (failed, claimed, pending)] == [
        Status.FAILED,
        Status.SENDING,
        Status.PENDING,
    ]


async def test_prune_failed_deletes_old_failed_and_cancelled_rows(subject: Subject, clock: FakeClock) -> None:
    """prune_failed deletes FAILED and CANCELLED rows last changed before the cutoff, nothing newer."""
    failed, cancelled, pending = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=1)
    await subject.store.finish([Transition(failed.id, "token-a", Status.FAILED)], now=clock.now())
    assert await subject.store.cancel(cancelled.id, now=clock.now()) is not None
    clock.advance(10)
    cutoff = clock.now()
    [recent] = await add(subject.store, clock, 1)
    await claim(subject.store, clock, limit=5)
    await subject.store.finish([Transition(recent.id, "token-a", Status.FAILED)], now=clock.now())
    assert await subject.store.prune_failed(before=cutoff, limit=1) == 1
    assert await subject.store.prune_failed(before=cutoff, limit=100) == 1
    assert (await subject.store.get(failed.id), await subject.store.get(cancelled.id)) == (None, None)
    assert (await stored(subject.store, recent.id)).status is Status.FAILED
    assert (await stored(subject.store, pending.id)).status is Status.SENDING


async def test_pruning_a_message_deletes_its_attempt_history(subject: Subject, clock: FakeClock) -> None:
    """A pruned message's attempt records go with it."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    transition = Transition(claimed.id, "token-a", Status.SUCCESS, "p-1", sent_at=clock.now())
    await subject.store.finish([transition], now=clock.now(), attempts=[await attempt_of(claimed, clock)])
    assert len(await subject.store.history(message.id)) == 1
    clock.advance(1)
    assert await subject.store.prune_sent(before=clock.now(), limit=10) == 1
    assert await subject.store.history(message.id) == []


async def test_pruning_deletes_attempt_rows_in_the_database(
    sql_engine: AsyncEngine, clock: FakeClock
) -> None:
    """The database's cascade removes message_attempts rows of a pruned message (SQLite included)."""
    store = SqlMessageStore(sql_engine)
    await add(store, clock, 1)
    [claimed] = await claim(store, clock)
    await store.finish(
        [Transition(claimed.id, "token-a", Status.FAILED)],
        now=clock.now(),
        attempts=[await attempt_of(claimed, clock)],
    )
    clock.advance(1)
    assert await store.prune_failed(before=clock.now(), limit=10) == 1
    async with sql_engine.connect() as connection:
        left = await connection.scalar(text("SELECT count(*) FROM message_attempts"))
    assert left == 0


async def test_ping_answers_true(subject: Subject) -> None:
    """A reachable store answers its ping."""
    assert await subject.store.ping() is True


async def test_exclusive_is_held_by_one_at_a_time(subject: Subject) -> None:
    """While one holder has a lock, another gets False; after release the lock can be had again."""
    async with subject.store.exclusive("retention") as first:
        async with subject.store.exclusive("retention") as second:
            assert (first, second) == (True, False)
        async with subject.store.exclusive("other") as other:
            assert other is True
    async with subject.store.exclusive("retention") as again:
        assert again is True


@pytest.mark.postgres
async def test_exclusive_is_fleet_wide_on_postgres(pg_url: str) -> None:
    """On PostgreSQL a lock held by one instance (its own pool) is refused to another."""
    engines = [await migrated_engine(async_pg_url(pg_url)) for _ in range(2)]
    try:
        first, second = (SqlMessageStore(engine) for engine in engines)
        async with first.exclusive("retention") as held, second.exclusive("retention") as refused:
            assert (held, refused) == (True, False)
        async with second.exclusive("retention") as later:
            assert later is True
    finally:
        for engine in engines:
            await engine.dispose()


# ===== Issue 3, operator side: attempt history, idempotent create, retry/cancel, instances =====


def record(
    message: Message, outcome: AttemptOutcome = AttemptOutcome.DELIVERED, **extra: object
) -> AttemptRecord:
    """Return an attempt record of ``message``'s current attempt, with any field overridden."""
    fields: dict[str, object] = {
        "message_id": message.id,
        "attempt": message.attempts,
        "started_at": message.updated_at,
        "duration_ms": 12.5,
        "outcome": outcome,
        "instance": "worker-a",
    }
    return AttemptRecord(**{**fields, **extra})  # type: ignore[arg-type]


async def failed(store: Store, clock: FakeClock, count: int, *, to: str | None = None) -> list[Message]:
    """Create, claim and fail ``count`` messages one second apart; return them as stored."""
    created = []
    for n in range(count):
        created.append(await store.create(NewMessage(to or f"+9055522{n:05d}", f"dead {n}"), now=clock.now()))
        clock.advance(1)
    await claim(store, clock, claimant="token-f")
    fail = [Transition(m.id, "token-f", Status.FAILED, last_error="HTTP 400 bad number") for m in created]
    await store.finish(fail, now=clock.now())
    return [await stored(store, m.id) for m in created]


async def test_finish_records_the_attempts_in_order(subject: Subject, clock: FakeClock) -> None:
    """finish stores each attempt record with every field, returned by history as recorded."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    clock.advance(1)
    attempt = record(
        claimed,
        AttemptOutcome.RETRYABLE,
        http_status=503,
        error_class="http_5xx",
        error="provider answered HTTP 503: busy",
        response_excerpt="busy",
        duration_ms=41.25,
    )
    retry = Transition(message.id, "token-a", Status.PENDING, last_error="503", next_attempt_at=clock.now())
    await subject.store.finish([retry], now=clock.now(), attempts=[attempt])
    [second] = await claim(subject.store, clock, claimant="token-b")
    delivered = record(second, started_at=clock.now(), http_status=202, response_excerpt='{"ok":1}')
    done = Transition(message.id, "token-b", Status.SUCCESS, "p-1", sent_at=clock.now())
    await subject.store.finish([done], now=clock.now(), attempts=[delivered])
    assert await subject.store.history(message.id) == [attempt, delivered]
    assert [a.started_at.utcoffset() for a in await subject.store.history(message.id)] == [timedelta(0)] * 2


async def test_finish_keeps_a_late_attempt_marked_not_applied(subject: Subject, clock: FakeClock) -> None:
    """An attempt whose transition lost the race is kept with applied=False; one of an unknown id is not."""
    first, second = await add(subject.store, clock, 2)
    claimed = await claim(subject.store, clock)
    late = Transition(second.id, "someone-else", Status.SUCCESS, "p-2", sent_at=clock.now())
    ghost = AttemptRecord(uuid4(), 1, clock.now(), 1.0, AttemptOutcome.DELIVERED)
    attempts = [record(claimed[0]), record(claimed[1]), ghost]
    done = Transition(first.id, "token-a", Status.SUCCESS, "p-1", sent_at=clock.now())
    assert await subject.store.finish([done, late], now=clock.now(), attempts=attempts) == {first.id}
    assert [a.applied for a in await subject.store.history(first.id)] == [True]
    assert [a.applied for a in await subject.store.history(second.id)] == [False]
    assert await subject.store.history(ghost.message_id) == []


async def test_history_of_a_message_never_tried_is_empty(subject: Subject, clock: FakeClock) -> None:
    """A new message, and an unknown id, have no attempts."""
    [message] = await add(subject.store, clock, 1)
    assert await subject.store.history(message.id) == []
    assert await subject.store.history(uuid4()) == []


async def test_rescue_records_a_lease_expired_attempt(subject: Subject, clock: FakeClock) -> None:
    """A rescued row gets a lease_expired record: its attempt, claim time, claimant, time since."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    clock.advance(LEASE_S + 1)
    await subject.store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=10)
    [rescue] = await subject.store.history(message.id)
    assert (rescue.attempt, rescue.outcome, rescue.error_class, rescue.error) == (
        1,
        AttemptOutcome.LEASE_EXPIRED,
        "lease_expired",
        LEASE_EXPIRED,
    )
    assert (rescue.started_at, rescue.duration_ms, rescue.instance, rescue.applied) == (
        claimed.updated_at,
        (LEASE_S + 1) * 1000,
        "worker-a",
        True,
    )


async def test_rescue_records_nothing_for_live_leases(subject: Subject, clock: FakeClock) -> None:
    """A rescue that changes nothing leaves no record."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    assert await subject.store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=1) == 0
    assert await subject.store.history(message.id) == []


@pytest.mark.postgres
async def test_rescue_is_skipped_while_another_instance_rescues(pg_url: str, clock: FakeClock) -> None:
    """On PostgreSQL, while another instance holds the rescue lock, a rescue changes nothing."""
    engine = await migrated_engine(async_pg_url(pg_url))
    try:
        store = SqlMessageStore(engine)
        [message] = await add(store, clock, 1)
        await claim(store, clock)
        clock.advance(LEASE_S + 1)
        async with engine.begin() as other:
            await other.execute(select(func.pg_advisory_xact_lock(RESCUE_LOCK_KEY)))
            assert await store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=1) == 0
            assert (await stored(store, message.id)).status is Status.SENDING
        assert await store.rescue_expired(now=clock.now(), max_attempts=3, retry_delay_s=1) == 1
    finally:
        await engine.dispose()


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


async def test_retry_replays_a_failed_message(subject: Subject, clock: FakeClock) -> None:
    """retry returns a FAILED message to PENDING, due now, attempts 0, keeping its last error."""
    [dead] = await failed(subject.store, clock, 1)
    clock.advance(60)
    replayed = await subject.store.retry(dead.id, now=clock.now())
    assert replayed is not None and replayed == await subject.store.get(dead.id)
    assert (replayed.status, replayed.attempts, replayed.next_attempt_at, replayed.updated_at) == (
        Status.PENDING,
        0,
        clock.now(),
        clock.now(),
    )
    assert replayed.last_error == "HTTP 400 bad number"
    [again] = await claim(subject.store, clock, claimant="token-r")
    assert (again.id, again.attempts) == (dead.id, 1)


async def test_retry_replays_a_cancelled_message(subject: Subject, clock: FakeClock) -> None:
    """retry returns a CANCELLED message to PENDING."""
    [message] = await add(subject.store, clock, 1)
    await subject.store.cancel(message.id, now=clock.now())
    replayed = await subject.store.retry(message.id, now=clock.now())
    assert replayed is not None and replayed.status is Status.PENDING


async def test_retry_refuses_other_statuses(subject: Subject, clock: FakeClock) -> None:
    """retry of a PENDING, SENDING or SUCCESS message, a deleted or an unknown one, changes nothing."""
    [success] = await sent(subject.store, clock, 1)
    pending, sending, deleted = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.soft_delete(deleted.id, clock.now())
    before = [await subject.store.get(m.id) for m in (success, pending, sending)]
    for message_id in (success.id, pending.id, sending.id, deleted.id, uuid4()):
        assert await subject.store.retry(message_id, now=clock.now()) is None
    assert [await subject.store.get(m.id) for m in (success, pending, sending)] == before


async def test_cancel_moves_pending_to_cancelled_never_claimed(subject: Subject, clock: FakeClock) -> None:
    """A cancelled message is CANCELLED, returned as changed, and never claimed."""
    [message] = await add(subject.store, clock, 1)
    clock.advance(1)
    cancelled = await subject.store.cancel(message.id, now=clock.now())
    assert cancelled is not None and cancelled == await subject.store.get(message.id)
    assert (cancelled.status, cancelled.updated_at) == (Status.CANCELLED, clock.now())
    clock.advance(3600)
    assert await claim(subject.store, clock) == []


async def test_cancel_refuses_other_statuses(subject: Subject, clock: FakeClock) -> None:
    """cancel of a SENDING, SUCCESS, FAILED or CANCELLED message, or an unknown one, changes nothing."""
    [success] = await sent(subject.store, clock, 1)
    [dead] = await failed(subject.store, clock, 1)
    sending, other = await add(subject.store, clock, 2)
    await claim(subject.store, clock, limit=1, claimant="token-s")
    await subject.store.cancel(other.id, now=clock.now())
    before = [await subject.store.get(m.id) for m in (success, dead, sending, other)]
    for message_id in (success.id, dead.id, sending.id, other.id, uuid4()):
        assert await subject.store.cancel(message_id, now=clock.now()) is None
    assert [await subject.store.get(m.id) for m in (success, dead, sending, other)] == before


async def test_retry_batch_replays_matching_rows_in_id_order(subject: Subject, clock: FakeClock) -> None:
    """retry_batch replays up to limit matching rows after ``after``, ascending ids, leaving the rest."""
    dead = await failed(subject.store, clock, 5)
    ids = sorted(m.id for m in dead)
    first = await subject.store.retry_batch(MessageFilter(), now=clock.now(), after=None, limit=2)
    rest = await subject.store.retry_batch(MessageFilter(), now=clock.now(), after=first[-1], limit=10)
    assert (first, rest) == (ids[:2], ids[2:])
    assert {(m.status, m.attempts) for m in [await stored(subject.store, i) for i in ids]} == {
        (Status.PENDING, 0)
    }
    assert await subject.store.retry_batch(MessageFilter(), now=clock.now(), after=None, limit=10) == []


async def test_retry_batch_honours_the_filter(subject: Subject, clock: FakeClock) -> None:
    """Only rows of the filter's status, recipient and creation window are replayed."""
    early = await failed(subject.store, clock, 2)
    since = clock.now()
    middle = await failed(subject.store, clock, 2, to="+905559999999")
    until = clock.now()
    await failed(subject.store, clock, 1, to="+905558888888")
    [cancelled] = await add(subject.store, clock, 1)
    await subject.store.cancel(cancelled.id, now=clock.now())
    window = MessageFilter(status=Status.FAILED, since=since, until=until)
    assert set(await subject.store.retry_batch(window, now=clock.now(), after=None, limit=10)) == {
        m.id for m in middle
    }
    to = MessageFilter(to=early[0].to)
    assert await subject.store.retry_batch(to, now=clock.now(), after=None, limit=10) == [early[0].id]
    only_cancelled = MessageFilter(status=Status.CANCELLED)
    assert await subject.store.retry_batch(only_cancelled, now=clock.now(), after=None, limit=10) == [
        cancelled.id
    ]
    assert (await subject.store.count_by_status())[Status.FAILED] == 2


async def test_retry_batch_refuses_a_status_that_cannot_be_retried(
    subject: Subject, clock: FakeClock
) -> None:
    """retry_batch with status PENDING (or SUCCESS) raises ValueError."""
    for status in (Status.PENDING, Status.SUCCESS):
        with pytest.raises(ValueError, match="FAILED or CANCELLED"):
            await subject.store.retry_batch(
                MessageFilter(status=status), now=clock.now(), after=None, limit=1
            )


def instance(name: str, clock: FakeClock, *, pid: int = 42) -> InstanceInfo:
    """Return an instance heartbeating at the clock's time."""
    return InstanceInfo(name, "host-1", pid, "0.1.0", clock.now() - timedelta(minutes=5), clock.now())


async def test_heartbeat_inserts_then_updates_an_instance(subject: Subject, clock: FakeClock) -> None:
    """A heartbeat adds the instance; the next one, by the same name, replaces its row."""
    await subject.store.heartbeat(instance("b", clock))
    await subject.store.heartbeat(instance("a", clock))
    clock.advance(5)
    newer = instance("a", clock, pid=43)
    await subject.store.heartbeat(newer)
    seen = await subject.store.live_instances(seen_since=clock.now() - timedelta(seconds=15))
    assert seen == [newer, instance("b", FakeClock(clock.now() - timedelta(seconds=5)))]


async def test_live_instances_leaves_out_silent_ones(subject: Subject, clock: FakeClock) -> None:
    """An instance whose last heartbeat is before ``seen_since`` is not listed; at it, it is."""
    await subject.store.heartbeat(instance("old", clock))
    clock.advance(15)
    await subject.store.heartbeat(instance("new", clock))
    assert [
        i.name for i in await subject.store.live_instances(seen_since=clock.now() - timedelta(seconds=15))
    ] == [
        "new",
        "old",
    ]
    late = clock.now() - timedelta(seconds=14)
    assert [i.name for i in await subject.store.live_instances(seen_since=late)] == ["new"]


async def test_remove_instance_takes_it_off_the_list(subject: Subject, clock: FakeClock) -> None:
    """A removed instance is no longer listed; removing an unknown one is harmless."""
    await subject.store.heartbeat(instance("a", clock))
    await subject.store.remove_instance("a")
    await subject.store.remove_instance("never-seen")
    assert await subject.store.live_instances(seen_since=clock.now() - timedelta(hours=1)) == []


async def test_counts_follow_pruning(subject: Subject, clock: FakeClock) -> None:
    """After pruning, count_by_status no longer counts the deleted messages."""
    await sent(subject.store, clock, 3)
    clock.advance(1)
    await subject.store.prune_sent(before=clock.now(), limit=2)
    assert (await subject.store.count_by_status())[Status.SUCCESS] == 1
