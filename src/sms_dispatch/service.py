"""Use cases on messages: create (idempotently too), look up with history, list sent, seed samples."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from uuid import UUID

from sms_dispatch import keys
from sms_dispatch.domain import (
    AttemptRecord,
    Message,
    MessageRules,
    NewMessage,
    Status,
    check_idempotency_key,
)
from sms_dispatch.errors import Conflict, InvalidInput, NotFound, SmsDispatchError
from sms_dispatch.logs import get_logger
from sms_dispatch.ports import Clock, MessageFilter, MessageStore, Page, Position, SentCache

SEED_BATCH_SIZE = 5_000
"""Sample messages stored per transaction by ``seed``: large enough that the round trips and
commits vanish beside the rows (200,000 rows in a few seconds), small enough to show progress."""

MAX_OFFSET = 1_000_000
"""The deepest row a page/limit page may start at. Skipping rows costs time in proportion to
their number (about 45 ms per 500,000 here); a cursor reaches any depth in well under 1 ms."""

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
    """A message with the state of its cache entry and its attempt history."""

    message: Message
    cache: CacheEntry | None
    history: tuple[AttemptRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Created:
    """The message an idempotent create answers with, and whether this call made it."""

    message: Message
    created: bool


class MessageService:
    """Creates, finds and lists messages."""

    def __init__(self, *, store: MessageStore, cache: SentCache, clock: Clock, rules: MessageRules) -> None:
        self._store = store
        self._cache = cache
        self._clock = clock
        self._rules = rules

    async def create(self, to: str, content: str) -> Message:
        """Validate and store a new PENDING message; ``InvalidInput`` lists every fault."""
        new = self._rules.validate(to, content)
        message = await self._store.create(new, now=self._clock.now())
        log.info("message created", message_id=str(message.id))
        return message

    async def create_once(self, to: str, content: str, *, idempotency_key: str) -> Created:
        """Store a new message under ``idempotency_key``, or return the one already stored under it.

        ``InvalidInput`` for a bad body or key; ``Conflict`` when the key was used for another body.
        """
        new = self._rules.validate(to, content)
        key = check_idempotency_key(idempotency_key)
        message, created = await self._store.create_idempotent(new, now=self._clock.now(), key=key)
        if (message.to, message.content) != (new.to, new.content):
            raise Conflict(
                f"Idempotency-Key {key!r} was already used for a different message ({message.id});"
                " use a new key for a new message"
            )
        if created:
            log.info("message created", message_id=str(message.id), idempotency_key=key)
        return Created(message=message, created=created)

    async def get(self, message_id: UUID) -> MessageDetail:
        """Return the message, its cache entry and its attempts; ``NotFound`` if there is none."""
        message = await self._store.get(message_id)
        if message is None:
            raise NotFound(f"no message with id {message_id}")
        history = tuple(await self._store.history(message_id))
        return MessageDetail(message=message, cache=await self._cache_entry(message), history=history)

    async def list_sent(
        self, *, page: int, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return one page of SUCCESS messages, newest first: after ``after``, else page ``page``.

        ``InvalidInput`` when the page starts deeper than ``MAX_OFFSET`` rows (a cursor reaches
        any depth at the same cost) or the time window is empty.
        """
        if after is None and (page - 1) * limit > MAX_OFFSET:
            raise InvalidInput(
                {"page": f"pages may start at most {MAX_OFFSET:,} rows deep; page deeper with cursor"}
            )
        _check_window(where)
        return await self._store.list_sent(page=page, limit=limit, after=after, where=where)

    async def list_messages(
        self, *, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return one page of messages, newest first, after ``after``; ``InvalidInput`` for an empty window."""
        _check_window(where)
        return await self._store.list_messages(limit=limit, after=after, where=where)

    async def counts(self) -> Mapping[Status, int]:
        """Return how many messages are in each status."""
        return await self._store.count_by_status()

    async def seed(
        self, count: int, *, batch_size: int = SEED_BATCH_SIZE, rng: random.Random | None = None
    ) -> AsyncIterator[int]:
        """Store ``count`` sample messages like the Go service's seed, a batch per transaction;
        yield how many rows each batch stored."""
        rng = rng or random.Random()
        left = count
        while left > 0:
            batch = [sample_message(rng, self._rules.max_length) for _ in range(min(batch_size, left))]
            left -= len(batch)
            yield await self._store.create_many(batch, now=self._clock.now())

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


def _check_window(where: MessageFilter | None) -> None:
    """Raise ``InvalidInput`` when the filter's time window holds no time at all."""
    if where is None or where.since is None or where.until is None:
        return
    if where.until <= where.since:
        raise InvalidInput({"until": "must be later than since"})


_SAMPLE_TEXTS = (
    "Insider - Project",
    "Your order has shipped and will arrive tomorrow.",
    "Kampanya: bugün tüm ürünlerde %20 indirim!",
    "Your verification code is {code}.",
    "Randevunuz yarın saat 14:00'te. Görüşmek üzere.",
)


SAMPLE_PREFIX = "+90555"
"""Every +90 555 number with 7 more digits is a valid Turkish mobile number in E.164 form."""


def sample_message(rng: random.Random, max_length: int) -> NewMessage:
    """Return a sample message that is valid by construction (no parsing per row, unlike a create):
    an E.164 Turkish mobile number and a trimmed text of at most ``max_length`` characters."""
    number = f"{SAMPLE_PREFIX}{rng.randrange(0, 10_000_000):07d}"
    text = rng.choice(_SAMPLE_TEXTS).format(code=rng.randrange(100_000, 1_000_000))
    return NewMessage(to=number, content=text[:max_length].rstrip())
