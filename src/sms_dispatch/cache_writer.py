"""Writes sent-message entries to the cache in the background, and again once it is back.

Redis is a cache, not the source of truth, yet an entry lost to an outage is a wrong answer
later. So a failed write is not dropped: its entries wait in a bounded backlog (oldest dropped
past the bound, and counted) and are written with the next write that succeeds, or by a timer
while nothing else is written. Nothing here ever blocks or slows a send: ``submit`` only starts
a task. An outage is logged once when it starts and once when it ends (``OutageLog``), not once
per refused write.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sms_dispatch.errors import SmsDispatchError
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.ports import SentCache

log = get_logger(__name__)

DEFAULT_MAX_BACKLOG = 100_000
DEFAULT_RETRY_S = 5.0
DEFAULT_WRITE_TIMEOUT_S = 5.0
DEFAULT_CHUNK = 1_000
_CACHE_FAULTS = (SmsDispatchError, TimeoutError, OSError)


@dataclass(slots=True)
class CacheWriteCounters:
    """Cache write totals since start, in entries."""

    failed: int = 0
    """Entries whose first write failed (each went to the backlog)."""
    written_late: int = 0
    """Backlog entries written once the cache answered again."""
    dropped: int = 0
    """Backlog entries dropped, oldest first, to keep the backlog within its bound."""


class CacheWriter:
    """Background writer of ``sent_messages:<messageId>`` entries with a bounded retry backlog."""

    def __init__(
        self,
        cache: SentCache,
        *,
        ttl_s: float,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        retry_s: float = DEFAULT_RETRY_S,
        timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        chunk: int = DEFAULT_CHUNK,
        counters: CacheWriteCounters | None = None,
    ) -> None:
        if max_backlog < 1 or chunk < 1:
            raise ValueError("max_backlog and chunk must be at least 1")
        self._cache = cache
        self._ttl_s = ttl_s
        self._max_backlog = max_backlog
        self._retry_s = retry_s
        self._timeout_s = timeout_s
        self._chunk = chunk
        self.counters = counters if counters is not None else CacheWriteCounters()
        # provider message id -> send time; insertion order is age, oldest first.
        self._backlog: OrderedDict[str, datetime] = OrderedDict()
        self._writes: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._cache_is_back = asyncio.Event()
        self._outage = OutageLog("redis", "writing the sent-message cache", logger=log)

    @property
    def backlog_size(self) -> int:
        """How many entries wait for the cache to come back."""
        return len(self._backlog)

    def submit(self, sent: Mapping[str, datetime]) -> None:
        """Write these entries in the background; on failure keep them for a later try."""
        if not sent:
            return
        task = asyncio.create_task(self._write(dict(sent)))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, sent: dict[str, datetime]) -> None:
        if await self._try(sent):
            if self._backlog:
                self._start_flusher(wait_first=False)
            return
        self.counters.failed += len(sent)
        self._keep(sent)
        self._start_flusher(wait_first=True)

    async def _try(self, sent: Mapping[str, datetime]) -> bool:
        try:
            await asyncio.wait_for(self._cache.remember_sent(sent, ttl_s=self._ttl_s), self._timeout_s)
        except _CACHE_FAULTS as exc:
            # Kept for a later try; sending goes on. One line per outage, however many writes fail.
            self._outage.failed(exc, entries=len(sent), backlog=len(self._backlog))
            return False
        self._outage.succeeded(backlog=len(self._backlog))
        return True

    def _keep(self, sent: Mapping[str, datetime]) -> None:
        """Add entries to the backlog; past its bound the oldest are dropped and counted."""
        self._backlog.update(sent)
        excess = len(self._backlog) - self._max_backlog
        if excess > 0:
            for _ in range(excess):
                self._backlog.popitem(last=False)
            self.counters.dropped += excess
            log.warning("cache backlog full; oldest entries dropped", dropped=excess, bound=self._max_backlog)

    def _start_flusher(self, *, wait_first: bool) -> None:
        if self._flusher is not None and not self._flusher.done():
            if not wait_first:
                self._cache_is_back.set()  # a write just worked: stop waiting out the timer
            return
        self._cache_is_back.clear()
        self._flusher = asyncio.create_task(self._flush_loop(wait_first=wait_first))

    async def _flush_loop(self, *, wait_first: bool) -> None:
        """Write the backlog oldest first, a chunk at a time; after a failure wait for the timer
        or for another write to succeed, whichever comes first."""
        if wait_first:
            await self._pause()
        while self._backlog:
            if not await self.flush_chunk():
                await self._pause()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._cache_is_back.wait(), self._retry_s)
        self._cache_is_back.clear()

    async def flush_chunk(self) -> bool:
        """Try to write the oldest chunk of the backlog now; return False if the cache refused.

        The entries stay in the backlog until written, so a cancelled write loses nothing.
        """
        chunk = dict(itertools.islice(self._backlog.items(), self._chunk))
        if not chunk:
            return True
        if not await self._try(chunk):
            return False
        for key in chunk:
            self._backlog.pop(key, None)
        self.counters.written_late += len(chunk)
        if not self._backlog:
            log.info("cache backlog written", written_late=self.counters.written_late)
        return True

    async def drain(self) -> None:
        """Wait for the writes in flight; then try the backlog once more and stop the timer."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        while self._backlog and await self.flush_chunk():
            pass
        if self._backlog:
            log.warning("cache entries not written before shutdown", entries=len(self._backlog))
