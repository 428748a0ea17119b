"""The dispatcher's heartbeat: listed while it runs, gone after a clean shutdown, never fatal."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

from sms_dispatch import __version__
from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.domain import NewMessage
from sms_dispatch.ports import InstanceInfo
from tests.fakes import RecordingSmsProvider

HEARTBEAT_S = 0.05


def make(store: InMemoryMessageStore, provider: RecordingSmsProvider, name: str) -> Dispatcher:
    """Build a dispatcher that beats every 50 ms and runs a batch every 50 ms."""
    clock = SystemClock()
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=1),
        instance_name=name,
    )
    return Dispatcher(
        deliverer=deliverer,
        control=store,
        clock=clock,
        interval_s=0.05,
        instance_name=name,
        heartbeat_s=HEARTBEAT_S,
    )


async def wait_for(condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.01)


async def test_a_running_dispatcher_is_listed_with_its_process() -> None:
    """While running, the status lists this instance with its host, pid, version and times."""
    store = InMemoryMessageStore()
    dispatcher = make(store, RecordingSmsProvider(), "alpha")
    task = asyncio.create_task(dispatcher.run())

    async def listed() -> bool:
        return bool((await dispatcher.status()).instances)

    await wait_for(listed)
    [me] = (await dispatcher.status()).instances
    assert (me.name, me.host, me.pid, me.version) == ("alpha", socket.gethostname(), os.getpid(), __version__)
    assert me.started_at <= me.last_heartbeat_at
    await dispatcher.shutdown(task, grace_s=5)


async def test_the_heartbeat_moves_on() -> None:
    """Each beat advances last_heartbeat_at; started_at stays."""
    store = InMemoryMessageStore()
    dispatcher = make(store, RecordingSmsProvider(), "alpha")
    task = asyncio.create_task(dispatcher.run())

    async def beats() -> list[InstanceInfo]:
        return list((await dispatcher.status()).instances)

    async def listed() -> bool:
        return bool(await beats())

    await wait_for(listed)
    [first] = await beats()

    async def moved() -> bool:
        return (await beats())[0].last_heartbeat_at > first.last_heartbeat_at

    await wait_for(moved)
    assert (await beats())[0].started_at == first.started_at
    await dispatcher.shutdown(task, grace_s=5)


async def test_a_clean_shutdown_removes_the_instance() -> None:
    """After shutdown the instance is no longer listed, while another one still is."""
    store = InMemoryMessageStore()
    alpha, beta = make(store, RecordingSmsProvider(), "alpha"), make(store, RecordingSmsProvider(), "beta")
    tasks = [asyncio.create_task(d.run()) for d in (alpha, beta)]

    async def both() -> bool:
        return len((await alpha.status()).instances) == 2

    await wait_for(both)
    await alpha.shutdown(tasks[0], grace_s=5)
    assert [i.name for i in (await beta.status()).instances] == ["beta"]
    await beta.shutdown(tasks[1], grace_s=5)


class FailingHeartbeats(InMemoryMessageStore):
    """A store whose heartbeat writes fail, as when the instances table is unreachable."""

    beats = 0

    async def heartbeat(self, instance: InstanceInfo) -> None:
        """Count the call, then fail."""
        self.beats += 1
        raise OSError("database went away")


async def test_failing_heartbeats_do_not_stop_sending() -> None:
    """When heartbeats fail they are retried every period and the batches still go out."""
    store = FailingHeartbeats()
    for i in range(3):
        await store.create(NewMessage("+905551111111", f"m{i}"), now=SystemClock().now())
    provider = RecordingSmsProvider()
    dispatcher = make(store, provider, "alpha")
    task = asyncio.create_task(dispatcher.run())

    async def sent_all() -> bool:
        return len(provider.sent) == 3 and store.beats >= 2

    await wait_for(sent_all)
    assert not task.done()
    await dispatcher.shutdown(task, grace_s=5)
