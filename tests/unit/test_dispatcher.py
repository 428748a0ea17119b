"""The scheduler loop: first batch at once, interval, start/stop, one slot per interval for the fleet."""

from __future__ import annotations

import asyncio

import pytest

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.adapters.pg_notify import InProcessNewMessageSignal
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.domain import NewMessage
from sms_dispatch.pump import Pump
from tests.fakes import RecordingSmsProvider


def make(
    store: InMemoryMessageStore,
    provider: RecordingSmsProvider,
    interval_s: float,
    name: str,
    *,
    continuous: bool = False,
) -> Dispatcher:
    """Build a dispatcher with batch size 2 on a real clock (and a pump, for continuous mode)."""
    clock = SystemClock()
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=2, max_workers=2),
        instance_name=name,
    )
    pump = Pump(deliverer=deliverer, control=store, signal=InProcessNewMessageSignal(), clock=clock)
    return Dispatcher(
        deliverer=deliverer,
        control=store,
        clock=clock,
        interval_s=interval_s,
        instance_name=name,
        pump=pump if continuous else None,
    )


async def fill(store: InMemoryMessageStore, n: int) -> None:
    """Add ``n`` pending messages."""
    clock = SystemClock()
    for i in range(n):
        await store.create(NewMessage(to="+905551111111", content=f"m{i}"), now=clock.now())


async def test_first_batch_runs_at_once_then_every_interval() -> None:
    """At start one batch goes out at once; the next only after the interval."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 6)
    dispatcher = make(store, provider, interval_s=0.5, name="a")
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.2)
    assert len(provider.sent) == 2
    await asyncio.sleep(0.5)
    assert len(provider.sent) == 4
    await dispatcher.shutdown(task, grace_s=2)


async def test_stop_halts_and_start_resumes() -> None:
    """Stop ends the sending; start resumes it; status reports the switch."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 6)
    dispatcher = make(store, provider, interval_s=0.2, name="a")
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.1)
    stopped = await dispatcher.stop()
    sent_at_stop = len(provider.sent)
    await asyncio.sleep(0.5)
    assert not stopped.running
    assert len(provider.sent) == sent_at_stop
    started = await dispatcher.start()
    assert started.running
    await asyncio.sleep(0.3)
    assert len(provider.sent) > sent_at_stop
    await dispatcher.shutdown(task, grace_s=2)


async def test_fleet_shares_one_slot_per_interval() -> None:
    """Three dispatchers on one store send batch_size per interval between them, not each."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 20)
    dispatchers = [make(store, provider, interval_s=0.5, name=n) for n in "abc"]
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]
    await asyncio.sleep(0.3)
    assert len(provider.sent) == 2
    await asyncio.gather(*(d.shutdown(t, grace_s=2) for d, t in zip(dispatchers, tasks, strict=True)))


async def test_stop_on_one_instance_stops_all() -> None:
    """The switch is shared: a stop through one dispatcher is seen by another."""
    store = InMemoryMessageStore()
    a, b = (make(store, RecordingSmsProvider(), interval_s=1, name=n) for n in "ab")
    await a.stop()
    assert not (await b.status()).running
    await b.start()
    assert (await a.status()).running


async def test_continuous_mode_drains_without_waiting() -> None:
    """With interval 0 the dispatcher runs its pump, which sends the whole queue without waiting."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 30)
    dispatcher = make(store, provider, interval_s=0, name="a", continuous=True)
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.3)
    assert len(provider.sent) == 30
    await dispatcher.shutdown(task, grace_s=2)


async def test_continuous_mode_without_a_pump_is_refused() -> None:
    """Interval 0 without a pump is a wiring error, not a slower continuous mode of its own."""
    dispatcher = make(InMemoryMessageStore(), RecordingSmsProvider(), interval_s=0, name="a")
    with pytest.raises(ValueError, match="needs a Pump"):
        await dispatcher.run()
