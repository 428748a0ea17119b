"""The sent-message cache on Redis: ``sent_messages:<messageId>`` = send time, with a TTL.

Redis is a cache, not the source of truth: every Redis failure surfaces as
``DependencyUnavailable`` for the core to count and move past, and the client's short
timeouts keep a down or slow Redis from stalling a send.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.keys import sent_message_key, sent_message_ttl_s, sent_message_value

# redis-py's own ConnectionError and TimeoutError are RedisErrors; socket faults are OSErrors.
_REDIS_FAULTS = (RedisError, OSError)

# All the keys of a batch in one command: ``SET key value EX ttl`` for each KEYS[i] / ARGV[i + 1].
# redis-py spends about 27 µs of client CPU per command queued in a pipeline; one script call
# for 1,000 keys costs about 5 µs a key (measured: `bench/redis_cache.py`), and Redis runs the
# sets back to back. Chunks of ``SCRIPT_KEYS`` keep each call short on the server.
_SET_ALL = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""
SCRIPT_KEYS = 1000


def _unavailable(exc: BaseException) -> DependencyUnavailable:
    detail = str(exc)
    return DependencyUnavailable(
        f"redis: {type(exc).__name__}: {detail}" if detail else f"redis: {type(exc).__name__}",
        dependency="redis",
    )


class RedisSentCache:
    """``SentCache`` on a Redis client built by ``create_redis_client``."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._set_all = client.register_script(_SET_ALL)  # EVALSHA, loading it on NOSCRIPT

    async def remember_sent(self, sent: Mapping[str, datetime], *, ttl_s: float) -> None:
        """Store ``sent_messages:<messageId>`` = send time (RFC 3339) for each entry at once."""
        if not sent:
            return
        expiry_s = sent_message_ttl_s(ttl_s)
        keys = [sent_message_key(provider_message_id) for provider_message_id in sent]
        values = [sent_message_value(sent_at) for sent_at in sent.values()]
        try:
            for start in range(0, len(keys), SCRIPT_KEYS):
                end = start + SCRIPT_KEYS
                await self._set_all(keys=keys[start:end], args=[expiry_s, *values[start:end]])
        except _REDIS_FAULTS as exc:
            raise _unavailable(exc) from exc

    async def sent_at(self, provider_message_id: str) -> str | None:
        """Return the cached send time for this provider id, or None."""
        try:
            value = await self._client.get(sent_message_key(provider_message_id))
        except _REDIS_FAULTS as exc:
            raise _unavailable(exc) from exc
        return None if value is None else str(value)

    async def ttl_s(self, provider_message_id: str) -> float | None:
        """Return the seconds left before the entry expires (inf: never), or None if absent."""
        try:
            left_ms = int(await self._client.pttl(sent_message_key(provider_message_id)))
        except _REDIS_FAULTS as exc:
            raise _unavailable(exc) from exc
        if left_ms == -2:
            return None
        return float("inf") if left_ms == -1 else left_ms / 1000

    async def ping(self) -> bool:
        """Return True when Redis answers, False when it does not (never raises)."""
        try:
            return bool(await self._client.ping())
        except _REDIS_FAULTS:
            return False


def create_redis_client(url: str) -> aioredis.Redis:
    """Build a Redis client from ``url`` that gives up within about a second.

    Connects lazily (nothing happens until the first command); close it with ``aclose()``.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        # One immediate retry heals a pooled connection Redis closed; more would stall sends.
        retry=Retry(NoBackoff(), retries=1),
        health_check_interval=30,
    )
