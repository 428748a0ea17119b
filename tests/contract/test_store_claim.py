"""Store contract: claiming due messages under a token and a lease, alone and by two instances at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status, Transition
from tests.conftest import FakeClock
from tests.contract.store_helpers import LEASE_S, Subject, add, claim, migrated_engine, sqlite_url


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


async def test_a_sqlite_row_whose_text_is_not_utf8_is_claimed_with_replacement_characters(
    tmp_path: Path,
) -> None:
    """A row another program stored with bytes that are not UTF-8 is claimed, those bytes read as
    U+FFFD, and the rows behind it too (sqlite3 raised on it: one such row failed every claim).
    PostgreSQL refuses such text on the way in."""
    engine = await migrated_engine(sqlite_url(tmp_path / "hand.db"))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("""INSERT INTO messages ("to", content) VALUES ('+905551111111', CAST(x'68ff69' AS TEXT))"""))  # fmt: skip
            await connection.execute(text("""INSERT INTO messages ("to", content) VALUES ('+905551111111', 'fine')"""))  # fmt: skip
        store, due = SqlMessageStore(engine), datetime.now(UTC) + timedelta(seconds=1)
        claimed = await store.claim_due(limit=10, now=due, lease_s=LEASE_S, claim_token="t", claimed_by="w")
        assert sorted(m.content for m in claimed) == ["fine", "h\ufffdi"]
    finally:
        await engine.dispose()
