"""Helpers for the delivery-guarantee tests of the real process: rows, counts, waits, duplicates."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from sms_dispatch.simulator import ReceivedRequest
from tests.e2e.conftest import clean_env, run_cli

TO = "+905551111111"


def service_env(pg_url: str, provider_url: str, **extra: str) -> dict[str, str]:
    """Return a clean environment for a process on ``pg_url`` sending to ``provider_url``."""
    return clean_env(
        {
            "DATABASE_URL": pg_url,
            "SMS_PROVIDER_URL": provider_url,
            "SMS_PROVIDER_KEY": "test-key",
            "LOG_LEVEL": "INFO",
            **extra,
        }
    )


def migrate(env: Mapping[str, str], cwd: Path) -> None:
    """Create the schema with ``sms-dispatch migrate``."""
    result = run_cli(["migrate"], env, cwd)
    assert result.returncode == 0, result.stderr


async def insert_pending(pg_url: str, count: int, prefix: str = "message") -> None:
    """Insert ``count`` PENDING rows by plain SQL, each with its own content ``<prefix> <n>``."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            'INSERT INTO messages ("to", content)'
            " SELECT $1, $2 || ' ' || n FROM generate_series(1, $3::int) AS n",
            TO,
            prefix,
            count,
        )
    finally:
        await conn.close()


async def status_counts(pg_url: str) -> Counter[str]:
    """Return how many rows are in each status."""
    conn = await asyncpg.connect(pg_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM messages GROUP BY status")
    finally:
        await conn.close()
    return Counter({row["status"]: row["n"] for row in rows})


async def fetch_rows(pg_url: str) -> list[asyncpg.Record]:
    """Return every message row (id, content, status, attempts, message_id, next_attempt_at)."""
    conn = await asyncpg.connect(pg_url)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT id, content, status, attempts, message_id, next_attempt_at, last_error FROM messages"
        )
    finally:
        await conn.close()
    return rows


async def sends_by_instance(pg_url: str) -> dict[str, int]:
    """Return how many recorded attempts each instance made (from the attempt history)."""
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch("SELECT instance, count(*) AS n FROM message_attempts GROUP BY instance")
    finally:
        await conn.close()
    return {row["instance"]: row["n"] for row in rows}


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, *, poll_s: float = 0.1
) -> None:
    """Poll ``check`` until it returns True; fail after ``timeout_s`` saying what was awaited."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(poll_s)


@dataclass(frozen=True, slots=True)
class ProviderTally:
    """What the provider received: requests, distinct messages, and the extra sends."""

    requests: int
    messages: int
    duplicates: int
    duplicated_keys: frozenset[str]


def tally(requests: list[ReceivedRequest]) -> ProviderTally:
    """Count the accepted requests per idempotency key."""
    accepted = Counter(r.idempotency_key or "" for r in requests if r.status == 202)
    extra = {key: n - 1 for key, n in accepted.items() if n > 1}
    return ProviderTally(
        requests=sum(accepted.values()),
        messages=len(accepted),
        duplicates=sum(extra.values()),
        duplicated_keys=frozenset(extra),
    )


def assert_keys_match_rows(requests: list[ReceivedRequest], rows: list[asyncpg.Record]) -> None:
    """Every request for a row's (unique) content carries that row's id as its idempotency key."""
    id_by_content = {row["content"]: str(row["id"]) for row in rows}
    assert len(id_by_content) == len(rows), "contents are not unique"
    wrong = [r for r in requests if id_by_content.get(r.content or "") != r.idempotency_key]
    assert not wrong, f"{len(wrong)} requests carry another key than their message id: {wrong[:3]}"
