"""Group commit of finished sends, the one recorder of batch mode and continuous mode alike.

A result waits at most ``window_s`` after it is added for others to join its group (a full
group goes at once), then the group is written with one call of ``write`` (one finish: one
statement for the rows, one for the attempt history). The window is the result's own,
counted from when it was added: a group being written does not hold back the next one, which
is written when its window ends while up to ``max_writes`` groups are written at once. So a
result reaches the database within ``window_s`` plus the time of its own write, and after
``kill -9`` the unrecorded sends are those of the last window and the writes then under way.

A write that fails because the database does not answer is retried with backoff, with one log
line when the outage starts and one when it ends, for ``retry_for_s`` (a lease's length: by
then the rows are the rescue's; a late write is harmless, its guarded update just no longer
applies). Any other failure is a bug: logged
with its traceback and the group given up, its rows left SENDING for the lease rescue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sms_dispatch.faults import is_outage
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog

log = get_logger(__name__)

T = TypeVar("T")

MAX_WRITES = 2
"""Groups written at the same time: a write slower than the window does not hold the next back,
and the recorder never takes more than this of the pool's connections."""
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


class GroupRecorder(Generic[T]):
    """Collect results and write them in groups, each result within its window."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[object]],
        *,
        window_s: float,
        max_group: int,
        retry_for_s: float,
        outage: OutageLog,
        max_writes: int = MAX_WRITES,
        on_settled: Callable[[list[T]], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if max_group < 1 or max_writes < 1:
            raise ValueError(f"max_group ({max_group}) and max_writes ({max_writes}) must be at least 1")
        self._write = write
        self._max_group = max_group
        self._retry_for_s = retry_for_s
        self._outage = outage
        self._window_s = window_s
        self._on_settled = on_settled
        self._monotonic = monotonic
        self._sleep = sleep
        self._waiting: deque[tuple[T, float]] = deque()
        self._kick = asyncio.Event()  # a full group or a flush: stop waiting for the window
        self._urgent = False  # write what waits now, whatever its window
        self._slots = asyncio.Semaphore(max_writes)
        self._flusher: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self.unsettled = 0
        """Results added and neither written nor given up."""
        self.given_up = 0
        """Results whose write was given up (their rows wait for the lease rescue)."""
        self.error: BaseException | None = None
        """The error that made the last group be given up."""

    def add(self, result: T) -> None:
        """Take a finished send; it is written within the window."""
        self._waiting.append((result, self._monotonic()))
        self.unsettled += 1
        if len(self._waiting) >= self._max_group:
            self._kick.set()
        self._start_flusher()

    def flush(self) -> None:
        """Write what waits now, without waiting for its window to end."""
        if self._waiting:
            self._urgent = True
            self._kick.set()
            self._start_flusher()

    async def drain(self) -> None:
        """Write what waits now and return once every result is written or given up."""
        self.flush()
        while (self._flusher is not None and not self._flusher.done()) or self._writes:
            if self._flusher is not None:
                await self._flusher
            if self._writes:
                await asyncio.gather(*self._writes)

    def abort(self) -> None:
        """Stop writing (shutdown's grace is over): the rows stay SENDING for the lease rescue."""
        for task in (self._flusher, *self._writes):
            if task is not None:
                task.cancel()

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="recorder")

    async def _flush_loop(self) -> None:
        while self._waiting:
            wait_s = self._waiting[0][1] + self._window_s - self._monotonic()
            if wait_s > 0 and not self._urgent and len(self._waiting) < self._max_group:
                self._kick.clear()
                await self._wait(wait_s)
                continue
            await self._slots.acquire()  # meanwhile more results join the group
            size = min(len(self._waiting), self._max_group)
            group = [self._waiting.popleft()[0] for _ in range(size)]
            if not self._waiting:
                self._urgent = False
            task = asyncio.create_task(self._write_group(group), name="recorder-write")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _wait(self, wait_s: float) -> None:
        """Wait ``wait_s`` or until kicked, whichever comes first."""
        timer = asyncio.ensure_future(self._sleep(wait_s))
        kicked = asyncio.ensure_future(self._kick.wait())
        try:
            await asyncio.wait((timer, kicked), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            kicked.cancel()

    async def _write_group(self, group: list[T]) -> None:
        try:
            await self._write_until_done(group)
        finally:
            self._slots.release()
            self.unsettled -= len(group)
            if self._on_settled is not None:
                self._on_settled(group)

    async def _write_until_done(self, group: list[T]) -> None:
        delay_s = RETRY_FIRST_S
        give_up_at: float | None = None
        while True:
            try:
                await self._write(group)
            except Exception as exc:
                if not is_outage(exc):
                    log.error(
                        "recording results failed; the lease rescue returns them",
                        count=len(group),
                        exc_info=exc,
                    )
                    self._give_up(group, exc)
                    return
                self._outage.failed(exc, count=len(group))
                now = self._monotonic()
                give_up_at = now + self._retry_for_s if give_up_at is None else give_up_at
                if now >= give_up_at:
                    log.warning(
                        "results not recorded within the lease; the rescue returns them", count=len(group)
                    )
                    self._give_up(group, exc)
                    return
                await self._sleep(min(delay_s, give_up_at - now))
                delay_s = min(delay_s * 2, RETRY_MAX_S)
                continue
            self._outage.succeeded()
            return

    def _give_up(self, group: list[T], exc: BaseException) -> None:
        self.given_up += len(group)
        self.error = exc


__all__ = ["MAX_WRITES", "GroupRecorder"]
