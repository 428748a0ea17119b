"""``seed``: sample messages in batches, counted exactly, valid by construction."""

from __future__ import annotations

import random

import pytest

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.domain import MessageRules, Status, validate_message
from sms_dispatch.service import MessageService, sample_message
from tests.conftest import FakeClock


def service(store: InMemoryMessageStore, clock: FakeClock, max_length: int = 160) -> MessageService:
    """A message service over ``store``."""
    return MessageService(
        store=store, cache=InMemorySentCache(clock), clock=clock, rules=MessageRules(max_length=max_length)
    )


async def test_seed_stores_in_batches_and_counts_exactly(clock: FakeClock) -> None:
    """12 messages in batches of 5: three batches of 5, 5 and 2, and 12 PENDING rows."""
    store = InMemoryMessageStore()
    batches = [n async for n in service(store, clock).seed(12, batch_size=5, rng=random.Random(7))]
    assert batches == [5, 5, 2]
    assert (await store.count_by_status())[Status.PENDING] == 12


@pytest.mark.parametrize("max_length", [160, 20, 1])
def test_sample_messages_are_valid_by_construction(max_length: int) -> None:
    """Every sample passes the checks a create makes, unchanged by them, whatever MESSAGE_MAX_LENGTH."""
    rng = random.Random(42)
    for _ in range(2000):
        sample = sample_message(rng, max_length)
        assert validate_message(sample.to, sample.content, max_length) == sample


async def test_seeded_rows_are_checked_already(clock: FakeClock) -> None:
    """Seeded rows are marked validated: the dispatcher does not parse them again."""
    store = InMemoryMessageStore()
    async for _ in service(store, clock, max_length=30).seed(3):
        pass
    page = await store.list_messages(limit=10)
    assert len(page.items) == 3 and all(m.validated and len(m.content) <= 30 for m in page.items)
