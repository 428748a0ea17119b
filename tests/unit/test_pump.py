"""Continuous mode's sender pool: refills as it drains, bounded, paced, woken, stopped cleanly."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.adapters.pg_notify import InProcessNewMessageSignal
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.domain import Message, NewMessage, Outcome, SendResult, Status
from sms_dispatch.logs import configure_logging
from sms_dispatch.ports import SWITCH_CHANGED
from sms_dispatch.progress import Progress
from sms_dispatch.pump import Pump
from tests.fakes import RecordingSmsProvider

CLOCK = SystemClock()


@dataclass
class SlowFor(RecordingSmsProvider):
    """Answers at once, except for the messages ``slow`` names, which take ``slow_s``."""

    slow: set[str] = field(default_factory=set)
    slow_s: float = 3.0

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Delay the slow ones, then deliver."""
        if message.content in self.slow:
            await asyncio.sleep(self.slow_s)
        return await super().send(message, timeout_s=timeout_s)


def deliverer_on(store: InMemoryMessageStore, provider: RecordingSmsProvider, **policy: float) -> Deliverer:
    """Build a deliverer over ``store`` and ``provider`` with a small policy."""
    return Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(CLOCK),
        clock=CLOCK,
        policy=DeliveryPolicy(**{"batch_size": 8, "max_workers": 4, "retry_base_s": 0.2, **policy}),  # type: ignore[arg-type]
        instance_name="test",
    )


def pump_on(
    store: InMemoryMessageStore,
    provider: RecordingSmsProvider,
    *,
    signal: InProcessNewMessageSignal | None = None,
    rate_limit_per_s: float | None = None,
    idle_poll_s: float | None = 0.05,
    **policy: float,
) -> Pump:
    """Build a pump over ``store`` and ``provider`` with a small policy."""
    return Pump(
        deliverer=deliverer_on(store, provider, **policy),
        control=store,
        signal=signal or InProcessNewMessageSignal(),
        clock=CLOCK,
        rate_limit_per_s=rate_limit_per_s,
        idle_poll_s=idle_poll_s,
    )


@asynccontextmanager
async def running(*pumps: Pump) -> AsyncIterator[None]:
    """Run the pumps for the block, then close them and wait for them to finish."""
    tasks = [asyncio.create_task(pump.run()) for pump in pumps]
    try:
        yield
    finally:
        for pump in pumps:
            pump.close()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)


async def fill(store: InMemoryMessageStore, n: int) -> list[uuid.UUID]:
    """Add ``n`` pending messages named m0, m1, ...; return their ids."""
    created = [await store.create(NewMessage("+905551111111", f"m{i}"), now=CLOCK.now()) for i in range(n)]
    return [m.id for m in created]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``condition()`` holds (generous bound: fail, never hang)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def count(store: InMemoryMessageStore, status: Status) -> int:
    """How many stored messages are in ``status``."""
    return sum(1 for m in store.all() if m.status is status)


async def test_drains_every_message_exactly_once() -> None:
    """Every pending message is sent once and recorded SUCCESS."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 50)
    async with running(pump_on(store, provider)):
        await until(lambda: count(store, Status.SUCCESS) == 50)
    assert sorted(m.content for m in provider.sent) == sorted(f"m{i}" for i in range(50))


async def test_a_slow_send_does_not_hold_back_the_next_claims() -> None:
    """While one send hangs, the other senders go on claiming and sending the rest."""
    store, provider = InMemoryMessageStore(), SlowFor(slow={"m0"}, slow_s=5.0)
    await fill(store, 20)
    async with running(pump_on(store, provider, batch_size=4, max_workers=2)):
        await until(lambda: count(store, Status.SUCCESS) == 19, timeout_s=4.0)
        assert count(store, Status.SENDING) == 1


async def test_sends_in_flight_never_exceed_max_workers() -> None:
    """At most MESSAGE_MAX_WORKERS sends are in flight, and the pool keeps them all busy."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider(delay_s=0.02)
    await fill(store, 40)
    async with running(pump_on(store, provider, batch_size=5, max_workers=3)):
        await until(lambda: count(store, Status.SUCCESS) == 40)
    assert provider.max_in_flight == 3


async def test_stop_sends_hands_buffered_claims_back_refunded() -> None:
    """After a stop no new send starts and every unsent claim is PENDING again, attempt refunded."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider(delay_s=0.1)
    await fill(store, 30)
    pump = pump_on(store, provider, batch_size=10, max_workers=2)
    async with running(pump):
        await until(lambda: len(provider.sent) >= 2)
        await store.set_running(False, now=CLOCK.now())
        pump.stop_sends()
        await until(lambda: count(store, Status.SENDING) == 0)
        sent_at_stop = len(provider.sent)
        await asyncio.sleep(0.3)
        assert len(provider.sent) == sent_at_stop
    pending = [m for m in store.all() if m.status is Status.PENDING]
    assert len(pending) == 30 - sent_at_stop
    assert all(m.attempts == 0 for m in pending)


async def test_a_switch_notification_hands_the_buffer_back_at_once() -> None:
    """Told the switch changed, a pump rereads it before its next claim and, stopped, hands back."""
    store, provider, signal = (
        InMemoryMessageStore(),
        RecordingSmsProvider(delay_s=5.0),
        InProcessNewMessageSignal(),
    )
    await fill(store, 10)
    async with running(pump_on(store, provider, signal=signal, batch_size=10, max_workers=1)):
        await until(lambda: provider.in_flight == 1)
        await store.set_running(False, now=CLOCK.now())  # as another instance would
        signal.notify(SWITCH_CHANGED)
        await until(lambda: count(store, Status.SENDING) == 1, timeout_s=3.0)
    assert count(store, Status.PENDING) == 9


async def test_close_records_the_sends_in_flight() -> None:
    """Closing waits for the sends in flight and records them; the rest go back unsent."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider(delay_s=0.2)
    await fill(store, 20)
    async with running(pump_on(store, provider, batch_size=10, max_workers=2)):
        await until(lambda: provider.in_flight == 2)
    assert count(store, Status.SUCCESS) == len(provider.sent)
    assert count(store, Status.SENDING) == 0
    assert count(store, Status.PENDING) == 20 - len(provider.sent)


async def test_a_notification_wakes_an_idle_pump_at_once() -> None:
    """An idle pump whose poll is far off sends a new message as soon as it is notified."""
    store, provider, signal = InMemoryMessageStore(), RecordingSmsProvider(), InProcessNewMessageSignal()
    async with running(pump_on(store, provider, signal=signal, idle_poll_s=60.0)):
        await asyncio.sleep(0.1)  # let it find the queue empty and go idle
        await fill(store, 1)
        signal.notify()
        await until(lambda: count(store, Status.SUCCESS) == 1, timeout_s=5.0)


async def test_an_idle_pump_without_notification_finds_new_rows_by_polling() -> None:
    """Without a notification the next poll finds the new message."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    async with running(pump_on(store, provider, idle_poll_s=0.1)):
        await asyncio.sleep(0.1)
        await fill(store, 1)
        await until(lambda: count(store, Status.SUCCESS) == 1, timeout_s=5.0)


async def test_its_own_retry_wakes_the_pump_when_due() -> None:
    """A retry it scheduled is sent when due, long before the next poll."""
    store = InMemoryMessageStore()
    provider = RecordingSmsProvider().then(SendResult(Outcome.RETRYABLE, error="busy", retry_after_s=0.3))
    await fill(store, 1)
    async with running(pump_on(store, provider, idle_poll_s=60.0)):
        await until(lambda: count(store, Status.SUCCESS) == 1, timeout_s=5.0)
    assert len(provider.sent) == 2


async def test_the_rate_limit_holds_for_two_pumps_together() -> None:
    """Two pumps on one store under a 20/s limit send at most 20/s plus one burst between them."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 200)
    pumps = [pump_on(store, provider, rate_limit_per_s=20.0) for _ in range(2)]
    started = time.monotonic()
    async with running(*pumps):
        await asyncio.sleep(1.0)
        elapsed_s = time.monotonic() - started
        sent = len(provider.sent)
    assert 10 <= sent <= 20 * elapsed_s + 20 + 2


async def test_an_unused_grant_goes_back_to_the_budget() -> None:
    """A claim that finds fewer rows than granted returns the rest: the budget is not wasted."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    await fill(store, 1)
    async with running(pump_on(store, provider, rate_limit_per_s=20.0)):
        await until(lambda: count(store, Status.SUCCESS) == 1)
        await asyncio.sleep(0.1)
    granted = await store.take_send_budget(100, now=CLOCK.now(), rate_per_s=20.0, burst_s=1.0)
    assert granted >= 19


async def test_the_dispatcher_stops_and_starts_its_pump() -> None:
    """In continuous mode the dispatcher's stop hands the claims back and its start resumes sending."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider(delay_s=0.05)
    await fill(store, 30)
    deliverer = deliverer_on(store, provider, batch_size=10, max_workers=2)
    pump = Pump(deliverer=deliverer, control=store, signal=InProcessNewMessageSignal(), clock=CLOCK)
    dispatcher = Dispatcher(
        deliverer=deliverer, control=store, clock=CLOCK, interval_s=0, instance_name="test", pump=pump
    )
    task = asyncio.create_task(dispatcher.run())
    await until(lambda: len(provider.sent) >= 2)
    await dispatcher.stop()
    await until(lambda: count(store, Status.SENDING) == 0)
    stopped_at = len(provider.sent)
    await asyncio.sleep(0.3)
    assert len(provider.sent) == stopped_at < 30
    await dispatcher.start()
    await until(lambda: count(store, Status.SUCCESS) == 30)
    await dispatcher.shutdown(task, grace_s=5)


async def test_a_trickle_logs_the_summary_at_most_once_a_second() -> None:
    """One row every 0.1 s for 2 s (a fake clock) gives at most 2 summary lines and the last one."""
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    store, provider, signal = InMemoryMessageStore(), RecordingSmsProvider(), InProcessNewMessageSignal()
    now_s = [0.0]
    pump = Pump(
        deliverer=deliverer_on(store, provider, record_window_s=0.0),
        control=store,
        signal=signal,
        clock=CLOCK,
        idle_poll_s=60.0,
        progress=Progress(monotonic=lambda: now_s[0]),
    )
    task = asyncio.create_task(pump.run())
    for sent in range(1, 21):
        await fill(store, 1)
        signal.notify()
        for _ in range(1000):  # drive the loop (no time passes) until the row is recorded
            if count(store, Status.SUCCESS) == sent:
                break
            await asyncio.sleep(0)
        now_s[0] += 0.1
    pump.close()
    await asyncio.wait_for(task, timeout=5)
    summaries = [
        line for line in map(json.loads, stream.getvalue().splitlines()) if line["event"] == "sending"
    ]
    structlog.reset_defaults()
    assert count(store, Status.SUCCESS) == 20
    assert 1 <= len(summaries) <= 3, [s["delivered"] for s in summaries]
    assert sum(s["delivered"] for s in summaries) == 20
