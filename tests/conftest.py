"""Shared fixtures: a fresh PostgreSQL database per test, a clean Redis database, a private
redis-server to kill, the service's log as JSON lines, a fake clock.

Tests that need PostgreSQL or Redis skip with a reason when it is absent, except under
``CI=true``, where they fail: CI must never pass by skipping the real thing.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from sms_dispatch.logs import configure_logging
from tests.redis_server import RedisServer

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(what: str, why: BaseException) -> None:
    message = f"{what} is not reachable ({type(why).__name__}: {why})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """Create an empty PostgreSQL database for one test; yield its plain URL; drop it after."""
    name = f"smsd_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _unavailable("PostgreSQL", exc)
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """Yield the URL of an emptied Redis test database (db 15); empty it again after."""
    client = aioredis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        await client.flushdb()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _unavailable("Redis", exc)
        raise
    yield REDIS_TEST_URL
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server of the test's own (the machine's is left alone); killed after."""
    if shutil.which("redis-server") is None:
        _unavailable("redis-server", FileNotFoundError("not on the PATH"))
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def json_log() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Send the service's log lines, as JSON, to a buffer; yield a function that parses them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass
class FakeClock:
    """A clock that moves only when told to."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        """Return the fake current time."""
        return self.current

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 2026-01-01 12:00 UTC."""
    return FakeClock()
