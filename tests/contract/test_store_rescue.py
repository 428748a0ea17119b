"""Store contract: rescuing claims whose lease expired (worker stopped or crashed mid-send)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from sms_dispatch.adapters.sql_statements import RESCUE_LOCK_KEY
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import AttemptOutcome, Status
from tests.conftest import FakeClock
from tests.contract.store_helpers import (
    LEASE_EXPIRED,
    LEASE_S,
    Subject,
    add,
    async_pg_url,
    claim,
    migrated_engine,
    stored,
)


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
