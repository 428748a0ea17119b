"""A batch's results are recorded as they complete, counted once, and its report is whole at its end.

The event loop is driven by hand (no time passes): the recording window is 0 here, so each
result is written as soon as the loop gets to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import Message, NewMessage, SendResult, Status
from sms_dispatch.outcomes import BatchReport
from tests.conftest import FakeClock
from tests.fakes import RecordingSmsProvider


@dataclass
class HeldProvider(RecordingSmsProvider):
    """Answers at once, except for the messages ``held`` names, which wait for ``release``."""

    held: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Hold the named messages until released, then deliver."""
        if message.content in self.held:
            self.holding += 1
            await self.release.wait()
        return await super().send(message, timeout_s=timeout_s)


def make(
    clock: FakeClock, provider: RecordingSmsProvider, **policy: float
) -> tuple[Deliverer, InMemoryMessageStore]:
    """A deliverer that records each result as soon as it is added (window 0)."""
    store = InMemoryMessageStore()
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(**{"record_window_s": 0.0, **policy}),  # type: ignore[arg-type]
        instance_name="test",
    )
    return deliverer, store


async def fill(store: InMemoryMessageStore, clock: FakeClock, n: int) -> None:
    """Add ``n`` pending messages named m0, m1, ..., one second apart (claimed in that order)."""
    for i in range(n):
        await store.create(NewMessage(to="+905551111111", content=f"m{i}"), now=clock.now())
        clock.advance(1)


async def drive(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition()`` holds (no time passes); fail if it never does."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not met while the loop ran")


def count(store: InMemoryMessageStore, status: Status) -> int:
    """How many stored messages are in ``status``."""
    return sum(1 for m in store.all() if m.status is status)


async def test_finished_sends_are_recorded_before_the_batch_ends(clock: FakeClock) -> None:
    """While one send of a batch hangs, the ones that ended are already SUCCESS in the store."""
    provider = HeldProvider(held={"m0"})
    deliverer, store = make(clock, provider, batch_size=5, max_workers=5)
    await fill(store, clock, 5)
    batch = asyncio.create_task(deliverer.deliver_batch())
    await drive(lambda: count(store, Status.SUCCESS) == 4)
    assert not batch.done() and count(store, Status.SENDING) == 1
    provider.release.set()
    report = await asyncio.wait_for(batch, timeout=5)
    assert (report.claimed, report.delivered, count(store, Status.SUCCESS)) == (5, 5, 5)
    assert report.sent_ids and len(report.sent_ids) == 5


async def test_a_stop_hands_the_unsent_claims_back_while_a_send_hangs(clock: FakeClock) -> None:
    """A stop returns the unstarted claims at once, not when the send in flight ends."""
    provider = HeldProvider(held={"m0"})
    deliverer, store = make(clock, provider, batch_size=5, max_workers=1)
    await fill(store, clock, 5)
    stop = asyncio.Event()
    batch = asyncio.create_task(deliverer.deliver_batch(stop))
    await drive(lambda: provider.holding == 1)
    stop.set()
    await drive(lambda: count(store, Status.PENDING) == 4)
    assert not batch.done()
    provider.release.set()
    report = await asyncio.wait_for(batch, timeout=5)
    assert (report.delivered, report.handed_back) == (1, 4)
    assert all(m.attempts == 0 for m in store.all() if m.status is Status.PENDING)


async def test_each_recorded_group_is_counted_once_in_the_totals(clock: FakeClock) -> None:
    """Two groups recorded into one report add their own results to the totals, not the report's."""
    deliverer, store = make(clock, RecordingSmsProvider(), batch_size=4)
    await fill(store, clock, 4)
    token, claimed = await deliverer.claim(4)
    sends = [await deliverer.send_one(message, token) for message in claimed]
    report = BatchReport()
    await deliverer.record(sends[:2], report)
    await deliverer.record(sends[2:], report)
    assert report.delivered == 4
    assert deliverer.counters.delivered == 4
