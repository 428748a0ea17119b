"""One contract for every ``SentCache``: the in-memory fake and Redis must behave alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.redis_cache import RedisSentCache, create_redis_client
from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.ports import SentCache
from tests.conftest import FakeClock

SENT_AT = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
DAY_S = 86_400.0


@dataclass
class CacheCase:
    """A cache under test and a way to let time pass for it."""

    cache: SentCache
    elapse: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> str | None:
    """Name the backend: None for memory, the Redis URL for Redis."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return None


@pytest.fixture
async def case(backend: str | None, clock: FakeClock) -> AsyncIterator[CacheCase]:
    """Build the cache under test; memory time moves by the fake clock, Redis time for real."""
    if backend is None:

        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        yield CacheCase(InMemorySentCache(clock), advance)
        return
    client = create_redis_client(backend)
    try:
        yield CacheCase(RedisSentCache(client), asyncio.sleep)
    finally:
        await client.aclose()


async def test_remembered_send_time_reads_back_as_rfc3339_utc(case: CacheCase) -> None:
    """A remembered entry reads back as the send time in RFC 3339 UTC with microseconds."""
    await case.cache.remember_sent({"abc": SENT_AT}, ttl_s=DAY_S)

    assert await case.cache.sent_at("abc") == "2026-01-01T12:00:00.123456Z"


async def test_send_time_in_another_zone_is_stored_in_utc(case: CacheCase) -> None:
    """A send time given in another time zone is stored converted to UTC."""
    istanbul = SENT_AT.astimezone(timezone(timedelta(hours=3)))

    await case.cache.remember_sent({"abc": istanbul}, ttl_s=DAY_S)

    assert await case.cache.sent_at("abc") == "2026-01-01T12:00:00.123456Z"


async def test_entry_gets_the_requested_ttl(case: CacheCase) -> None:
    """A remembered entry expires after about ``ttl_s`` seconds."""
    await case.cache.remember_sent({"abc": SENT_AT}, ttl_s=DAY_S)

    ttl = await case.cache.ttl_s("abc")

    assert ttl is not None
    assert DAY_S - 5 <= ttl <= DAY_S


async def test_fractional_ttl_is_rounded_up_to_whole_seconds(case: CacheCase) -> None:
    """A TTL below one second still keeps the entry for one whole second."""
    await case.cache.remember_sent({"abc": SENT_AT}, ttl_s=0.2)

    ttl = await case.cache.ttl_s("abc")

    assert ttl is not None
    assert 0.5 < ttl <= 1.0


async def test_absent_entry_reads_as_none(case: CacheCase) -> None:
    """An id never remembered has no send time and no TTL."""
    assert await case.cache.sent_at("never-sent") is None
    assert await case.cache.ttl_s("never-sent") is None


async def test_many_entries_are_remembered_in_one_call(case: CacheCase) -> None:
    """Every entry of one call is stored with its own send time."""
    sent = {f"id-{n}": SENT_AT + timedelta(seconds=n) for n in range(500)}

    await case.cache.remember_sent(sent, ttl_s=DAY_S)

    assert await case.cache.sent_at("id-0") == "2026-01-01T12:00:00.123456Z"
    assert await case.cache.sent_at("id-499") == "2026-01-01T12:08:19.123456Z"
    for provider_message_id in sent:
        assert await case.cache.sent_at(provider_message_id) is not None


async def test_remembering_nothing_is_a_no_op(case: CacheCase) -> None:
    """An empty mapping stores nothing and does not fail."""
    await case.cache.remember_sent({}, ttl_s=DAY_S)

    assert await case.cache.sent_at("abc") is None


async def test_remembering_again_overwrites_value_and_ttl(case: CacheCase) -> None:
    """A second write of the same id replaces its send time and resets its TTL."""
    await case.cache.remember_sent({"abc": SENT_AT}, ttl_s=60)
    later = SENT_AT + timedelta(minutes=1)

    await case.cache.remember_sent({"abc": later}, ttl_s=DAY_S)

    assert await case.cache.sent_at("abc") == "2026-01-01T12:01:00.123456Z"
    ttl = await case.cache.ttl_s("abc")
    assert ttl is not None
    assert ttl > 60


async def test_entry_expires_after_its_ttl(case: CacheCase) -> None:
    """An entry is gone once its TTL has passed."""
    await case.cache.remember_sent({"abc": SENT_AT}, ttl_s=1)

    await case.elapse(1.2)

    assert await case.cache.sent_at("abc") is None
    assert await case.cache.ttl_s("abc") is None


async def test_ping_answers_true(case: CacheCase) -> None:
    """A working cache answers its ping."""
    assert await case.cache.ping() is True


# Memory-only behaviour: the bound that keeps the fake from growing without limit.


async def test_memory_cache_drops_the_oldest_entries_beyond_its_bound(clock: FakeClock) -> None:
    """Beyond ``max_entries`` the in-memory cache forgets the oldest writes first."""
    cache = InMemorySentCache(clock, max_entries=3)

    await cache.remember_sent({"a": SENT_AT, "b": SENT_AT}, ttl_s=DAY_S)
    await cache.remember_sent({"c": SENT_AT, "d": SENT_AT}, ttl_s=DAY_S)

    assert len(cache) == 3
    assert await cache.sent_at("a") is None
    assert await cache.sent_at("d") is not None


# Redis-only behaviour: what happens when Redis is not there.

CLOSED_PORT_URL = "redis://127.0.0.1:1/15"


@pytest.fixture
async def dead_redis_cache() -> AsyncIterator[RedisSentCache]:
    """A Redis cache whose client points at a port nobody listens on."""
    client = create_redis_client(CLOSED_PORT_URL)
    try:
        yield RedisSentCache(client)
    finally:
        await client.aclose()


async def test_unreachable_redis_raises_dependency_unavailable_quickly(
    dead_redis_cache: RedisSentCache,
) -> None:
    """Writing to an unreachable Redis raises DependencyUnavailable naming redis, within seconds."""
    started = time.monotonic()

    with pytest.raises(DependencyUnavailable, match=r"^redis: "):
        await dead_redis_cache.remember_sent({"abc": SENT_AT}, ttl_s=DAY_S)

    assert time.monotonic() - started < 5


async def test_unreachable_redis_read_raises_dependency_unavailable(
    dead_redis_cache: RedisSentCache,
) -> None:
    """Reading from an unreachable Redis raises DependencyUnavailable, not a Redis error."""
    with pytest.raises(DependencyUnavailable, match="redis"):
        await dead_redis_cache.sent_at("abc")


async def test_unreachable_redis_ping_answers_false(dead_redis_cache: RedisSentCache) -> None:
    """Pinging an unreachable Redis answers False instead of raising."""
    assert await dead_redis_cache.ping() is False
