"""The sent-message cache in process memory: same contract as Redis, expiry by the clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta

from sms_dispatch.keys import sent_message_key, sent_message_ttl_s, sent_message_value
from sms_dispatch.ports import Clock

DEFAULT_MAX_ENTRIES = 100_000


class InMemorySentCache:
    """``SentCache`` in a dict: entries expire by ``clock``; past ``max_entries`` the oldest go."""

    def __init__(self, clock: Clock, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._max_entries = max_entries
        # key -> (value, expires_at); insertion order is write order, oldest first.
        self._entries: OrderedDict[str, tuple[str, datetime]] = OrderedDict()

    async def remember_sent(self, sent: Mapping[str, datetime], *, ttl_s: float) -> None:
        """Store ``sent_messages:<messageId>`` = send time (RFC 3339) for each entry."""
        now = self._clock.now()
        expires_at = now + timedelta(seconds=sent_message_ttl_s(ttl_s))
        for provider_message_id, sent_at in sent.items():
            key = sent_message_key(provider_message_id)
            self._entries.pop(key, None)
            self._entries[key] = (sent_message_value(sent_at), expires_at)
        self._evict(now)

    async def sent_at(self, provider_message_id: str) -> str | None:
        """Return the cached send time for this provider id, or None."""
        entry = self._live(provider_message_id)
        return None if entry is None else entry[0]

    async def ttl_s(self, provider_message_id: str) -> float | None:
        """Return the seconds left before the entry expires, or None if absent."""
        entry = self._live(provider_message_id)
        return None if entry is None else (entry[1] - self._clock.now()).total_seconds()

    async def ping(self) -> bool:
        """Return True: memory always answers."""
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, provider_message_id: str) -> tuple[str, datetime] | None:
        key = sent_message_key(provider_message_id)
        entry = self._entries.get(key)
        if entry is not None and entry[1] <= self._clock.now():
            del self._entries[key]
            return None
        return entry

    def _evict(self, now: datetime) -> None:
        """Drop expired entries from the old end, then the oldest beyond the bound."""
        while self._entries:
            _, expires_at = next(iter(self._entries.values()))
            if expires_at > now:
                break
            self._entries.popitem(last=False)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
