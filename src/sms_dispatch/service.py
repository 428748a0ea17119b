"""Use cases on messages: create, look up, list sent, seed samples."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from uuid import UUID

from sms_dispatch import keys
from sms_dispatch.domain import Message, NewMessage, Status, validate_message
from sms_dispatch.errors import NotFound, SmsDispatchError
from sms_dispatch.logs import get_logger
from sms_dispatch.ports import Clock, MessageStore, Page, SentCache

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What the cache holds for a sent message."""

    key: str
    present: bool
    sent_at: str | None = None
    ttl_s: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MessageDetail:
    """A message with the state of its cache entry."""

    message: Message
    cache: CacheEntry | None


class MessageService:
    """Creates, finds and lists messages."""

    def __init__(self, *, store: MessageStore, cache: SentCache, clock: Clock, max_length: int) -> None:
        self._store = store
        self._cache = cache
        self._clock = clock
        self._max_length = max_length

    async def create(self, to: str, content: str) -> Message:
        """Validate and store a new PENDING message; ``InvalidInput`` lists every fault."""
        new = validate_message(to, content, self._max_length)
        message = await self._store.create(new, now=self._clock.now())
        log.info("message created", message_id=str(message.id))
        return message

    async def get(self, message_id: UUID) -> MessageDetail:
        """Return the message and its cache entry; ``NotFound`` if there is none."""
        message = await self._store.get(message_id)
        if message is None:
            raise NotFound(f"no message with id {message_id}")
        return MessageDetail(message=message, cache=await self._cache_entry(message))

    async def list_sent(self, *, page: int, limit: int) -> Page:
        """Return one page of SUCCESS messages, newest first."""
        return await self._store.list_sent(page=page, limit=limit)

    async def counts(self) -> Mapping[Status, int]:
        """Return how many messages are in each status."""
        return await self._store.count_by_status()

    async def seed(self, count: int, *, rng: random.Random | None = None) -> AsyncIterator[Message]:
        """Store ``count`` sample messages like the Go service's seed, yielding each one."""
        rng = rng or random.Random()
        for _ in range(count):
            yield await self._store.create(sample_message(rng), now=self._clock.now())

    async def _cache_entry(self, message: Message) -> CacheEntry | None:
        if message.message_id is None:
            return None
        key = keys.sent_message_key(message.message_id)
        try:
            sent_at = await self._cache.sent_at(message.message_id)
            ttl_s = await self._cache.ttl_s(message.message_id) if sent_at else None
        except SmsDispatchError as exc:
            return CacheEntry(key=key, present=False, error=exc.message)
        return CacheEntry(key=key, present=sent_at is not None, sent_at=sent_at, ttl_s=ttl_s)


_SAMPLE_TEXTS = (
    "Insider - Project",
    "Your order has shipped and will arrive tomorrow.",
    "Kampanya: bugün tüm ürünlerde %20 indirim!",
    "Your verification code is {code}.",
    "Randevunuz yarın saat 14:00'te. Görüşmek üzere.",
)


def sample_message(rng: random.Random) -> NewMessage:
    """Return a valid sample message to a Turkish mobile number."""
    number = f"+90555{rng.randrange(0, 10_000_000):07d}"
    text = rng.choice(_SAMPLE_TEXTS).format(code=rng.randrange(100_000, 1_000_000))
    return validate_message(number, text, max_length=160)
