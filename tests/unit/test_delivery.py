"""Delivering a batch with fakes: claim, send, retry, fail, hand back, cache."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import NewMessage, Outcome, SendResult, Status
from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.observability.redaction import SecretRedactor
from tests.conftest import FakeClock
from tests.fakes import RecordingSmsProvider


def make(
    clock: FakeClock,
    provider: RecordingSmsProvider | None = None,
    cache: object | None = None,
    redact: Callable[[str], str] = str,
    **policy: float,
) -> tuple[Deliverer, InMemoryMessageStore, RecordingSmsProvider, InMemorySentCache]:
    """Build a deliverer over an in-memory store and cache."""
    store = InMemoryMessageStore()
    provider = provider or RecordingSmsProvider()
    memory_cache = InMemorySentCache(clock)
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=cache if cache is not None else memory_cache,  # type: ignore[arg-type]
        clock=clock,
        policy=DeliveryPolicy(**{"retry_base_s": 10.0, **policy}),  # type: ignore[arg-type]
        instance_name="test",
        redact=redact,
    )
    return deliverer, store, provider, memory_cache


async def add(store: InMemoryMessageStore, clock: FakeClock, n: int, to: str = "+905551111111") -> list[str]:
    """Create ``n`` pending messages one second apart; return their ids oldest first."""
    ids = []
    for i in range(n):
        message = await store.create(NewMessage(to=to, content=f"message {i}"), now=clock.now())
        ids.append(str(message.id))
        clock.advance(1)
    return ids


async def test_sends_batch_size_oldest_first(clock: FakeClock) -> None:
    """A batch sends at most batch_size messages, the oldest ones, and marks them SUCCESS."""
    deliverer, store, provider, cache = make(clock, batch_size=2)
    ids = await add(store, clock, 3)
    report = await deliverer.deliver_batch()
    await deliverer.drain_cache_writes()
    assert [str(m.id) for m in provider.sent] == ids[:2]
    assert (report.claimed, report.delivered) == (2, 2)
    for message in provider.sent:
        stored = await store.get(message.id)
        assert stored is not None
        assert stored.status is Status.SUCCESS
        assert stored.message_id and stored.sent_at == clock.now()
        assert await cache.sent_at(stored.message_id) is not None


async def test_never_sends_a_message_twice(clock: FakeClock) -> None:
    """Batches run until the queue is empty send every message exactly once."""
    deliverer, store, provider, _ = make(clock, batch_size=3, max_workers=2)
    ids = await add(store, clock, 10)
    for _ in range(6):
        await deliverer.deliver_batch()
    assert sorted(str(m.id) for m in provider.sent) == sorted(ids)


async def test_invalid_row_fails_without_blocking_others(clock: FakeClock) -> None:
    """A hand-inserted row with a bad number goes FAILED with the reason; the next one is sent."""
    deliverer, store, provider, _ = make(clock, batch_size=1)
    bad = [str(store.insert_by_hand("12345", "message 0", now=clock.now()).id)]
    good = await add(store, clock, 1)
    await deliverer.deliver_batch()
    await deliverer.deliver_batch()
    failed = await store.get(__import__("uuid").UUID(bad[0]))
    assert failed is not None and failed.status is Status.FAILED
    assert failed.last_error and "invalid message: to:" in failed.last_error
    assert [str(m.id) for m in provider.sent] == good


async def test_retryable_error_backs_off(clock: FakeClock) -> None:
    """A 5xx puts the message back to PENDING with a later next attempt and the error kept."""
    provider = RecordingSmsProvider().then(SendResult(Outcome.RETRYABLE, http_status=500, error="HTTP 500"))
    deliverer, store, _, _ = make(clock, provider, batch_size=1, retry_base_s=10, retry_max_delay_s=60)
    ids = await add(store, clock, 1)
    report = await deliverer.deliver_batch()
    message = await store.get(provider.sent[0].id)
    assert message is not None
    assert report.retried == 1
    assert (message.status, message.attempts, message.last_error) == (Status.PENDING, 1, "HTTP 500")
    assert message.next_attempt_at is not None
    assert (
        clock.now() + timedelta(seconds=5) <= message.next_attempt_at <= clock.now() + timedelta(seconds=10)
    )
    assert (await deliverer.deliver_batch()).claimed == 0, "not due yet"
    clock.advance(11)
    await deliverer.deliver_batch()
    again = await store.get(provider.sent[0].id)
    assert again is not None and again.status is Status.SUCCESS and again.attempts == 2
    assert [str(m.id) for m in provider.sent] == ids * 2


async def test_retry_after_is_honoured(clock: FakeClock) -> None:
    """A 429 with Retry-After: 7 schedules the next attempt 7 s later."""
    provider = RecordingSmsProvider().then(SendResult(Outcome.RETRYABLE, http_status=429, retry_after_s=7))
    deliverer, store, _, _ = make(clock, provider, batch_size=1)
    await add(store, clock, 1)
    await deliverer.deliver_batch()
    message = await store.get(provider.sent[0].id)
    assert message is not None and message.next_attempt_at == clock.now() + timedelta(seconds=7)


async def test_gives_up_after_max_attempts(clock: FakeClock) -> None:
    """The last allowed attempt failing retryably ends in FAILED, saying so."""
    results = [SendResult(Outcome.RETRYABLE, error="timed out after 5.0s")] * 3
    provider = RecordingSmsProvider().then(*results)
    deliverer, store, _, _ = make(clock, provider, batch_size=1, max_attempts=3, retry_max_delay_s=1)
    await add(store, clock, 1)
    for _ in range(3):
        await deliverer.deliver_batch()
        clock.advance(2)
    message = await store.get(provider.sent[0].id)
    assert message is not None
    assert (message.status, message.attempts) == (Status.FAILED, 3)
    assert message.last_error == "gave up after 3 attempts: timed out after 5.0s"


async def test_permanent_error_fails_at_once(clock: FakeClock) -> None:
    """A 4xx refusal fails the message on its first attempt with the raw answer kept."""
    refusal = SendResult(
        Outcome.PERMANENT, http_status=403, raw_response='{"error":"bad key"}', error="HTTP 403"
    )
    deliverer, store, provider, _ = make(clock, RecordingSmsProvider().then(refusal), batch_size=1)
    await add(store, clock, 1)
    await deliverer.deliver_batch()
    message = await store.get(provider.sent[0].id)
    assert message is not None
    assert (message.status, message.attempts, message.raw_response) == (
        Status.FAILED,
        1,
        '{"error":"bad key"}',
    )


async def test_workers_are_bounded(clock: FakeClock) -> None:
    """No more than max_workers sends are in flight at once."""
    deliverer, store, provider, _ = make(
        clock, RecordingSmsProvider(delay_s=0.01), batch_size=20, max_workers=3
    )
    await add(store, clock, 20)
    await deliverer.deliver_batch()
    assert len(provider.sent) == 20
    assert provider.max_in_flight == 3


async def test_stop_hands_back_unstarted_claims(clock: FakeClock) -> None:
    """A stop mid-batch lets in-flight sends finish and returns the rest to PENDING, attempt refunded."""
    deliverer, store, _, _ = make(clock, RecordingSmsProvider(delay_s=0.05), batch_size=10, max_workers=2)
    await add(store, clock, 10)
    stop = asyncio.Event()
    batch = asyncio.create_task(deliverer.deliver_batch(stop))
    await asyncio.sleep(0.02)
    stop.set()
    report = await batch
    assert report.delivered == 2
    assert report.handed_back == 8
    counts = await store.count_by_status()
    assert (counts[Status.SUCCESS], counts[Status.PENDING], counts[Status.SENDING]) == (2, 8, 0)
    pending = [m for m in store.all() if m.status is Status.PENDING]
    assert all(m.attempts == 0 for m in pending)


async def test_batch_deadline_starts_no_new_send(clock: FakeClock) -> None:
    """Past SCHEDULER_BATCH_TIMEOUT no new send starts; the unsent claims are handed back."""
    provider = RecordingSmsProvider(delay_s=0.05)
    deliverer, store, _, _ = make(clock, provider, batch_size=10, max_workers=1, batch_timeout_s=0.12)
    await add(store, clock, 10)
    report = await deliverer.deliver_batch()
    assert 2 <= report.delivered <= 4
    assert report.delivered + report.handed_back == 10


class BrokenCache(InMemorySentCache):
    """A cache whose writes fail like a Redis that is down."""

    async def remember_sent(self, sent: object, *, ttl_s: float) -> None:  # type: ignore[override]
        """Fail."""
        raise DependencyUnavailable("redis: connection refused")


async def test_cache_failure_is_counted_not_fatal(clock: FakeClock) -> None:
    """Redis down: the message is still SUCCESS and the failed write is counted."""
    deliverer, store, _, _ = make(clock, cache=BrokenCache(clock), batch_size=1)
    await add(store, clock, 1)
    report = await deliverer.deliver_batch()
    await deliverer.drain_cache_writes()
    assert report.delivered == 1
    assert deliverer.counters.cache_write_failures == 1


class ExplodingProvider(RecordingSmsProvider):
    """A provider adapter with a bug: it raises."""

    async def send(self, message: object, *, timeout_s: float) -> SendResult:  # type: ignore[override]
        """Raise."""
        raise RuntimeError("boom")


async def test_provider_bug_does_not_lose_the_row(clock: FakeClock) -> None:
    """An adapter that raises is treated as retryable; nothing stays SENDING."""
    deliverer, store, _, _ = make(clock, ExplodingProvider(), batch_size=1)
    await add(store, clock, 1)
    report = await deliverer.deliver_batch()
    assert report.retried == 1
    assert (await store.count_by_status())[Status.SENDING] == 0


class LeakingProvider(RecordingSmsProvider):
    """A provider adapter with a bug whose exception text carries the auth key."""

    async def send(self, message: object, *, timeout_s: float) -> SendResult:  # type: ignore[override]
        """Raise with the key in the message."""
        raise RuntimeError("cannot send with key INS.secret-key")


async def test_a_raising_adapter_never_stores_a_secret(clock: FakeClock) -> None:
    """The core's own error text for an adapter bug goes through the redactor before it is stored."""
    deliverer, store, _, _ = make(
        clock, LeakingProvider(), redact=SecretRedactor(["INS.secret-key"]).redact, batch_size=1
    )
    [message_id] = await add(store, clock, 1)
    await deliverer.deliver_batch()
    stored = await store.get(uuid.UUID(message_id))
    assert stored is not None
    assert stored.last_error == "unexpected RuntimeError: cannot send with key ***"
    [attempt] = await store.history(uuid.UUID(message_id))
    assert attempt.error == "unexpected RuntimeError: cannot send with key ***"


@pytest.mark.parametrize("batch_size", [1, 5])
async def test_expired_leases_are_rescued(clock: FakeClock, batch_size: int) -> None:
    """A claim whose process died comes back after its lease and is sent."""
    deliverer, store, provider, _ = make(clock, batch_size=batch_size, lease_s=30)
    await add(store, clock, 1)
    await store.claim_due(limit=1, now=clock.now(), lease_s=30, claim_token="dead", claimed_by="crashed")
    assert (await deliverer.deliver_batch()).claimed == 0
    clock.advance(31)
    first = await deliverer.deliver_batch()
    clock.advance(11)
    second = await deliverer.deliver_batch()
    assert first.rescued == 1
    assert first.delivered + second.delivered == 1
    assert len(provider.sent) == 1
