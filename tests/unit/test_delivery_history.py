"""The attempt history a batch leaves: one record per send, invalid row and rescue; none per hand-back."""

from __future__ import annotations

import asyncio
from uuid import UUID

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import (
    RESPONSE_EXCERPT_LIMIT,
    AttemptOutcome,
    NewMessage,
    Outcome,
    SendResult,
)
from tests.conftest import FakeClock
from tests.fakes import RecordingSmsProvider


def make(
    clock: FakeClock, provider: RecordingSmsProvider | None = None, **policy: float
) -> tuple[Deliverer, InMemoryMessageStore, RecordingSmsProvider]:
    """Build a deliverer named "worker-1" over an in-memory store."""
    store = InMemoryMessageStore()
    provider = provider or RecordingSmsProvider()
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(**policy),  # type: ignore[arg-type]
        instance_name="worker-1",
    )
    return deliverer, store, provider


async def add(store: InMemoryMessageStore, clock: FakeClock, n: int, to: str = "+905551111111") -> list[UUID]:
    """Create ``n`` pending messages; return their ids oldest first."""
    ids = []
    for i in range(n):
        ids.append((await store.create(NewMessage(to=to, content=f"m{i}"), now=clock.now())).id)
        clock.advance(1)
    return ids


async def test_a_delivered_send_leaves_one_record(clock: FakeClock) -> None:
    """A delivered message has one record: attempt 1, delivered, 202, its start time and instance."""
    deliverer, store, _ = make(clock, batch_size=1)
    [message_id] = await add(store, clock, 1)
    await deliverer.deliver_batch()
    [record] = await store.history(message_id)
    assert (record.attempt, record.outcome, record.http_status, record.error_class) == (
        1,
        AttemptOutcome.DELIVERED,
        202,
        None,
    )
    assert (record.started_at, record.instance, record.applied) == (clock.now(), "worker-1", True)
    assert record.duration_ms >= 0


async def test_the_duration_is_measured(clock: FakeClock) -> None:
    """A send that takes 50 ms is recorded as taking about that long, not zero."""
    deliverer, store, _ = make(clock, RecordingSmsProvider(delay_s=0.05), batch_size=1)
    [message_id] = await add(store, clock, 1)
    await deliverer.deliver_batch()
    [record] = await store.history(message_id)
    assert record.duration_ms >= 45  # asyncio may wake a hair early


async def test_each_retry_adds_a_record_with_the_fault(clock: FakeClock) -> None:
    """A 503 then a delivery leave two records, numbered 1 and 2, the first with its fault."""
    busy = SendResult(
        Outcome.RETRYABLE, http_status=503, raw_response="busy", error="HTTP 503", error_class="http_5xx"
    )
    deliverer, store, _ = make(clock, RecordingSmsProvider().then(busy), batch_size=1, retry_max_delay_s=1)
    [message_id] = await add(store, clock, 1)
    await deliverer.deliver_batch()
    clock.advance(2)
    await deliverer.deliver_batch()
    first, second = await store.history(message_id)
    assert (first.attempt, first.outcome, first.http_status, first.error_class, first.error) == (
        1,
        AttemptOutcome.RETRYABLE,
        503,
        "http_5xx",
        "HTTP 503",
    )
    assert first.response_excerpt == "busy"
    assert (second.attempt, second.outcome) == (2, AttemptOutcome.DELIVERED)


async def test_the_answer_excerpt_is_bounded(clock: FakeClock) -> None:
    """A long provider answer is kept in the record cut to 500 characters."""
    refusal = SendResult(Outcome.PERMANENT, http_status=400, raw_response="x" * 2000, error_class="http_4xx")
    deliverer, store, _ = make(clock, RecordingSmsProvider().then(refusal), batch_size=1)
    [message_id] = await add(store, clock, 1)
    await deliverer.deliver_batch()
    [record] = await store.history(message_id)
    assert record.outcome is AttemptOutcome.PERMANENT
    assert record.response_excerpt == "x" * RESPONSE_EXCERPT_LIMIT


async def test_an_invalid_row_leaves_an_invalid_record(clock: FakeClock) -> None:
    """A row that fails validation is recorded as invalid, with the reason, and nothing is sent."""
    deliverer, store, provider = make(clock, batch_size=1)
    message_id = store.insert_by_hand("12345", "hello", now=clock.now()).id
    await deliverer.deliver_batch()
    [record] = await store.history(message_id)
    assert (record.outcome, record.error_class, record.http_status) == (
        AttemptOutcome.INVALID,
        "invalid",
        None,
    )
    assert record.error is not None and record.error.startswith("invalid message: to:")
    assert provider.sent == []


async def test_a_handed_back_claim_leaves_no_record(clock: FakeClock) -> None:
    """Claims handed back unsent at a stop have no record; the ones sent have one each."""
    deliverer, store, _ = make(clock, RecordingSmsProvider(delay_s=0.05), batch_size=6, max_workers=2)
    ids = await add(store, clock, 6)
    stop = asyncio.Event()
    batch = asyncio.create_task(deliverer.deliver_batch(stop))
    await asyncio.sleep(0.02)
    stop.set()
    report = await batch
    counts = [len(await store.history(message_id)) for message_id in ids]
    assert sum(counts) == report.delivered == 2
    assert report.handed_back == 4


async def test_a_rescue_leaves_a_lease_expired_record(clock: FakeClock) -> None:
    """A claim whose process died is recorded as lease_expired for its claimant, then delivered."""
    deliverer, store, _ = make(clock, batch_size=1, lease_s=30, retry_base_s=10)
    [message_id] = await add(store, clock, 1)
    await store.claim_due(limit=1, now=clock.now(), lease_s=30, claim_token="dead", claimed_by="crashed-7")
    clock.advance(31)
    await deliverer.deliver_batch()
    clock.advance(11)
    await deliverer.deliver_batch()
    rescued, delivered = await store.history(message_id)
    assert (rescued.attempt, rescued.outcome, rescued.instance) == (
        1,
        AttemptOutcome.LEASE_EXPIRED,
        "crashed-7",
    )
    assert (delivered.attempt, delivered.outcome, delivered.instance) == (
        2,
        AttemptOutcome.DELIVERED,
        "worker-1",
    )
