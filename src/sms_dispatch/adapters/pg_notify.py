"""Instant pickup: the ``NewMessageSignal`` on PostgreSQL ``LISTEN``, and one for in-process use.

``PgNewMessageSignal`` holds one dedicated asyncpg connection (not from the pool: a LISTEN
must stay on one session) on the channel the ``messages`` triggers notify (migration 0005).
It reconnects with backoff when the connection is lost, checks an idle connection now and
then, and wakes its subscribers once after every (re)connect, since rows may have come in
while nobody listened. While it is down the dispatcher simply polls faster.

``InProcessNewMessageSignal`` is the same port for SQLite and tests: ``notify()`` wakes the
subscribers; it never listens to anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy.engine import URL

from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.ports import SWITCH_CHANGED

log = get_logger(__name__)

CHANNEL = "sms_dispatch_new"
"""The channel migration 0005's triggers notify."""
APPLICATION_NAME = "sms-dispatch-listener"
HEALTH_CHECK_S = 30.0
RECONNECT_DELAY_S = 0.5
RECONNECT_MAX_DELAY_S = 30.0


class InProcessNewMessageSignal:
    """A ``NewMessageSignal`` woken by ``notify()`` in this process (SQLite, tests)."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[str], None]] = []

    @property
    def listening(self) -> bool:
        """Return False: nothing outside this process can wake it, so polling stays brisk."""
        return False

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` at every ``notify()``."""
        self._subscribers.append(callback)

    def notify(self, payload: str = "") -> None:
        """Wake every subscriber with ``payload`` (``"switch"``: the switch changed)."""
        for callback in self._subscribers:
            callback(payload)


class PgNewMessageSignal:
    """A ``NewMessageSignal`` on a dedicated asyncpg connection LISTENing on ``CHANNEL``."""

    def __init__(self, url: URL, *, health_check_s: float = HEALTH_CHECK_S) -> None:
        self._connect_args = _connect_args(url)
        self._health_check_s = health_check_s
        self._subscribers: list[Callable[[str], None]] = []
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.connects = 0
        """How many times the listener connected (a seam for tests and status)."""
        self._outage = OutageLog("database", "listening for new messages (polling meanwhile)", logger=log)

    @property
    def listening(self) -> bool:
        """Return True while the LISTEN connection is open."""
        return self._connection is not None and not self._connection.is_closed()

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with the payload at every notification, and with ``"switch"`` after
        every (re)connect."""
        self._subscribers.append(callback)

    async def start(self) -> None:
        """Start listening in the background (returns at once; connects with retries)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-notify-listener")

    async def wait_listening(self, timeout_s: float) -> bool:
        """Wait until the listener is connected; return whether it is (a seam for tests)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=timeout_s)
        return self.listening

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()

    async def _run(self) -> None:
        delay_s = RECONNECT_DELAY_S
        while True:
            try:
                await self._listen_until_lost()
                delay_s = RECONNECT_DELAY_S
                self._outage.failed(ConnectionError("the listening connection was closed"))
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._outage.failed(exc)
            await self._drop()
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_DELAY_S)

    async def _listen_until_lost(self) -> None:
        lost = asyncio.Event()
        connection = await asyncpg.connect(**self._connect_args)
        self._connection = connection
        connection.add_termination_listener(lambda _: lost.set())
        await connection.add_listener(CHANNEL, self._on_notification)
        self.connects += 1
        self._connected.set()
        log.debug("listening for new messages", channel=CHANNEL)
        self._outage.succeeded()
        self._wake(SWITCH_CHANGED)  # rows may have come in, the switch changed, while nobody listened
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=self._health_check_s)
            if not lost.is_set():
                await connection.fetchval("SELECT 1", timeout=5.0)  # a dead peer shows here

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._connected.clear()
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2.0)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._wake(payload)

    def _wake(self, payload: str) -> None:
        for callback in self._subscribers:
            callback(payload)


def _connect_args(url: URL) -> dict[str, Any]:
    """Return asyncpg.connect arguments for a SQLAlchemy ``postgresql+asyncpg`` URL."""
    args: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database,
        "timeout": 5.0,
        "server_settings": {"application_name": APPLICATION_NAME},
    }
    ssl = url.query.get("ssl") or url.query.get("sslmode")
    if isinstance(ssl, str):
        args["ssl"] = ssl
    return {name: value for name, value in args.items() if value is not None}
