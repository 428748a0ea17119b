"""Cache entries survive a Redis outage: kept in a bounded backlog, written once the cache is back."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.cache_writer import CacheWriter
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import NewMessage
from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.keys import sent_message_value
from sms_dispatch.logs import configure_logging
from tests.conftest import FakeClock
from tests.fakes import RecordingSmsProvider

SENT_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CACHED = sent_message_value(SENT_AT)


class FlakyCache(InMemorySentCache):
    """An in-process cache that refuses writes while ``down``, like Redis in an outage."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.down = False
        self.writes = 0

    async def remember_sent(self, sent: Mapping[str, datetime], *, ttl_s: float) -> None:
        """Fail while down; store the entries otherwise."""
        self.writes += 1
        if self.down:
            raise DependencyUnavailable("redis: connection refused")
        await super().remember_sent(sent, ttl_s=ttl_s)


class HangingCache(InMemorySentCache):
    """A cache whose writes never answer, like a Redis that accepts connections and stalls."""

    async def remember_sent(self, sent: Mapping[str, datetime], *, ttl_s: float) -> None:
        """Wait forever."""
        await asyncio.Event().wait()


def entries(*names: str) -> dict[str, datetime]:
    """Return cache entries for these provider ids, sent at SENT_AT."""
    return dict.fromkeys(names, SENT_AT)


async def settle(writer: CacheWriter) -> None:
    """Let the writer's background tasks run until they wait on something."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_failed_entries_are_written_with_the_next_write(clock: FakeClock) -> None:
    """Entries refused while Redis is down are written once a later write succeeds."""
    cache = FlakyCache(clock)
    writer = CacheWriter(cache, ttl_s=60, retry_s=3600)
    cache.down = True
    writer.submit(entries("a", "b"))
    await settle(writer)
    assert (writer.backlog_size, writer.counters.failed) == (2, 2)
    cache.down = False
    writer.submit(entries("c"))
    await settle(writer)
    assert [await cache.sent_at(key) for key in ("a", "b", "c")] == [CACHED] * 3
    assert (writer.backlog_size, writer.counters.written_late) == (0, 2)


async def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(clock: FakeClock) -> None:
    """Ten refused writes log one WARNING; the next write that succeeds logs one INFO."""
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    cache = FlakyCache(clock)
    writer = CacheWriter(cache, ttl_s=60, retry_s=3600)
    cache.down = True
    for n in range(10):
        writer.submit(entries(f"m{n}"))
    await settle(writer)
    cache.down = False
    writer.submit(entries("back"))
    await settle(writer)
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    structlog.reset_defaults()
    assert events == ["redis unavailable", "redis available again", "cache backlog written"]
    assert writer.backlog_size == 0


async def test_failed_entries_are_written_by_the_timer(clock: FakeClock) -> None:
    """With no later write, the timer writes the backlog once Redis answers again."""
    cache = FlakyCache(clock)
    writer = CacheWriter(cache, ttl_s=60, retry_s=0.01)
    cache.down = True
    writer.submit(entries("a"))
    await settle(writer)
    await asyncio.sleep(0.05)
    assert writer.backlog_size == 1, "still down: kept"
    cache.down = False
    for _ in range(200):
        if writer.backlog_size == 0:
            break
        await asyncio.sleep(0.01)
    assert await cache.sent_at("a") == CACHED
    assert writer.counters.written_late == 1


async def test_the_backlog_is_bounded_dropping_the_oldest(clock: FakeClock) -> None:
    """Past the bound the oldest entries are dropped and counted; the newest are written later."""
    cache = FlakyCache(clock)
    writer = CacheWriter(cache, ttl_s=60, max_backlog=3, retry_s=3600)
    cache.down = True
    for name in ("a", "b", "c", "d", "e"):
        writer.submit(entries(name))
        await settle(writer)
    assert (writer.backlog_size, writer.counters.dropped, writer.counters.failed) == (3, 2, 5)
    cache.down = False
    await writer.drain()
    assert [await cache.sent_at(key) is not None for key in "abcde"] == [False, False, True, True, True]


async def test_the_backlog_is_written_a_chunk_at_a_time(clock: FakeClock) -> None:
    """A large backlog goes out in chunks, oldest first, not as one huge write."""
    cache = FlakyCache(clock)
    writer = CacheWriter(cache, ttl_s=60, retry_s=3600, chunk=2)
    cache.down = True
    writer.submit(entries("a", "b", "c", "d", "e"))
    await settle(writer)
    cache.down, cache.writes = False, 0
    assert await writer.flush_chunk() is True
    assert (await cache.sent_at("a"), await cache.sent_at("c")) == (CACHED, None)
    await writer.drain()
    assert (cache.writes, writer.backlog_size) == (3, 0)


async def test_drain_gives_up_while_redis_is_still_down(clock: FakeClock) -> None:
    """At shutdown with Redis still down, drain returns after one try; the entries stay counted."""
    cache = FlakyCache(clock)
    writer = CacheWriter(cache, ttl_s=60, retry_s=3600)
    cache.down = True
    writer.submit(entries("a"))
    await asyncio.wait_for(writer.drain(), timeout=10)
    assert (writer.backlog_size, writer.counters.failed) == (1, 1)


async def test_sending_goes_on_while_redis_hangs(clock: FakeClock) -> None:
    """A cache that never answers does not hold up a batch; its entries wait in the backlog."""
    store = InMemoryMessageStore()
    deliverer = Deliverer(
        store=store,
        provider=RecordingSmsProvider(),
        cache=HangingCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=2),
        instance_name="w",
    )
    deliverer.cache_writer = CacheWriter(HangingCache(clock), ttl_s=60, timeout_s=0.05, retry_s=3600)
    for i in range(2):
        await store.create(NewMessage("+905551111111", f"m{i}"), now=clock.now())
    report = await asyncio.wait_for(deliverer.deliver_batch(), timeout=10)
    assert report.delivered == 2
    await asyncio.wait_for(deliverer.drain_cache_writes(), timeout=10)
    assert deliverer.cache_writer.backlog_size == 2


async def test_the_deliverer_counts_and_recovers_failed_writes(clock: FakeClock) -> None:
    """Through the deliverer: a batch sent while Redis is down is cached once it is back."""
    cache = FlakyCache(clock)
    store = InMemoryMessageStore()
    deliverer = Deliverer(
        store=store,
        provider=RecordingSmsProvider(),
        cache=cache,
        clock=clock,
        policy=DeliveryPolicy(batch_size=1),
        instance_name="w",
    )
    for i in range(2):
        await store.create(NewMessage("+905551111111", f"m{i}"), now=clock.now())
        clock.advance(1)
    cache.down = True
    await deliverer.deliver_batch()
    await settle(deliverer.cache_writer)
    assert deliverer.counters.cache_write_failures == 1
    cache.down = False
    clock.advance(1)
    await deliverer.deliver_batch()
    await deliverer.drain_cache_writes()
    sent = [m for m in store.all() if m.message_id is not None]
    assert len(sent) == 2
    assert all([await cache.sent_at(m.message_id) is not None for m in sent if m.message_id])
    assert deliverer.counters.cache.written_late == 1
