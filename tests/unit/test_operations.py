"""Operator actions over the in-memory store: conflicts named, bulk retry in bounded batches."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest

from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.domain import NewMessage, Status, Transition
from sms_dispatch.errors import Conflict, InvalidInput, NotFound
from sms_dispatch.operations import RETRY_LIMIT_MAX, OperatorActions
from sms_dispatch.ports import MessageFilter
from tests.conftest import FakeClock


class CountingStore(InMemoryMessageStore):
    """The in-memory store, counting the bulk retry statements it is asked to run."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def retry_batch(
        self, matching: MessageFilter, *, now: datetime, after: UUID | None, limit: int
    ) -> list[UUID]:
        """Record the batch's limit, then retry."""
        self.batches.append(limit)
        return await super().retry_batch(matching, now=now, after=after, limit=limit)


async def dead_letters(store: InMemoryMessageStore, clock: FakeClock, count: int) -> list[UUID]:
    """Store ``count`` FAILED messages; return their ids."""
    ids = [
        (await store.create(NewMessage("+905551111111", f"m{i}"), now=clock.now())).id for i in range(count)
    ]
    await store.claim_due(limit=count, now=clock.now(), lease_s=30, claim_token="t", claimed_by="w")
    await store.finish(
        [Transition(i, "t", Status.FAILED, last_error="HTTP 400") for i in ids], now=clock.now()
    )
    return ids


async def test_bulk_retry_runs_in_bounded_batches(clock: FakeClock) -> None:
    """Seven dead letters with batches of 3 take three statements of at most 3 rows each."""
    store = CountingStore()
    await dead_letters(store, clock, 7)
    actions = OperatorActions(store=store, clock=clock, batch_size=3)
    assert await actions.retry_matching(MessageFilter()) == 7
    assert store.batches == [3, 3, 3]
    assert (await store.count_by_status())[Status.PENDING] == 7


async def test_bulk_retry_stops_at_the_limit(clock: FakeClock) -> None:
    """A limit of 4 replays exactly 4, the last batch cut to fit."""
    store = CountingStore()
    await dead_letters(store, clock, 7)
    actions = OperatorActions(store=store, clock=clock, batch_size=3)
    assert await actions.retry_matching(MessageFilter(), limit=4) == 4
    assert store.batches == [3, 1]
    assert (await store.count_by_status())[Status.FAILED] == 3


@pytest.mark.parametrize(
    ("matching", "limit", "field"),
    [
        (MessageFilter(status=Status.PENDING), 10, "status"),
        (MessageFilter(status=Status.SUCCESS), 10, "status"),
        (MessageFilter(), 0, "limit"),
        (MessageFilter(), RETRY_LIMIT_MAX + 1, "limit"),
    ],
)
async def test_bulk_retry_refuses_bad_input(
    clock: FakeClock, matching: MessageFilter, limit: int, field: str
) -> None:
    """A status that cannot be replayed or a limit out of range is InvalidInput naming the field."""
    actions = OperatorActions(store=InMemoryMessageStore(), clock=clock)
    with pytest.raises(InvalidInput) as raised:
        await actions.retry_matching(matching, limit=limit)
    assert list(raised.value.fields) == [field]


async def test_bulk_retry_refuses_an_empty_window(clock: FakeClock) -> None:
    """since at or after until is InvalidInput on until."""
    actions = OperatorActions(store=InMemoryMessageStore(), clock=clock)
    window = MessageFilter(since=clock.now(), until=clock.now() - timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="until"):
        await actions.retry_matching(window)


async def test_conflicts_name_the_current_status(clock: FakeClock) -> None:
    """Retrying a PENDING message or cancelling a FAILED one is a Conflict naming the status."""
    store = InMemoryMessageStore()
    actions = OperatorActions(store=store, clock=clock)
    [dead] = await dead_letters(store, clock, 1)
    pending = await store.create(NewMessage("+905551111111", "hi"), now=clock.now())
    with pytest.raises(Conflict, match="is PENDING; only FAILED or CANCELLED"):
        await actions.retry(pending.id)
    with pytest.raises(Conflict, match="is FAILED; only PENDING"):
        await actions.cancel(dead)


async def test_unknown_messages_are_not_found(clock: FakeClock) -> None:
    """Retrying or cancelling an unknown id is NotFound."""
    actions = OperatorActions(store=InMemoryMessageStore(), clock=clock)
    with pytest.raises(NotFound):
        await actions.retry(uuid4())
    with pytest.raises(NotFound):
        await actions.cancel(uuid4())
