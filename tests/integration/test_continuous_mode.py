"""The composition root's two modes on the real PostgreSQL: continuous (pump, NOTIFY) and scheduled."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from sms_dispatch.bootstrap import bootstrap
from sms_dispatch.config import Settings
from tests.integration.provider_clients import CLIENTS

pytestmark = pytest.mark.postgres

INSERT = (
    "INSERT INTO messages (\"to\", content) SELECT '+905551111111', 'm' || g FROM generate_series(1, $1) g"
)


def settings_for(pg_url: str, **env: str) -> Settings:
    """Settings on ``pg_url`` with the built-in simulator and the in-process cache."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None, DATABASE_URL=pg_url, SMS_PROVIDER_URL="simulator", SEED_ON_FIRST_RUN=0, **env
    )


async def sent(connection: asyncpg.Connection, at_least: int, timeout_s: float = 20) -> int:
    """Wait until ``at_least`` rows are SUCCESS; return the count."""
    deadline = time.monotonic() + timeout_s
    while (
        count := await connection.fetchval("SELECT count(*) FROM messages WHERE status = 'SUCCESS'")
    ) < at_least:
        assert time.monotonic() < deadline, f"only {count} sent"
        await asyncio.sleep(0.05)
    return int(count)


@pytest.mark.parametrize("client", CLIENTS)
async def test_continuous_mode_sends_rows_inserted_while_running(pg_url: str, client: str) -> None:
    """With SCHEDULER_INTERVAL=0 every row, those inserted meanwhile too, is sent once (each client)."""
    settings = settings_for(
        pg_url,
        SCHEDULER_INTERVAL="0",
        MESSAGE_BATCH_SIZE="50",
        MESSAGE_MAX_WORKERS="8",
        PROVIDER_HTTP_CLIENT=client,
    )
    assert settings.provider_http_client == client
    async with bootstrap(settings):
        connection = await asyncpg.connect(pg_url)
        try:
            await connection.execute(INSERT, 120)
            await sent(connection, 120)
            await connection.execute(INSERT, 5)
            assert await sent(connection, 125) == 125
            assert await connection.fetchval("SELECT max(attempts) FROM messages") == 1
        finally:
            await connection.close()


async def test_scheduled_mode_is_not_woken_by_new_rows(pg_url: str) -> None:
    """With an interval, inserts (which notify) send nothing before the next slot."""
    settings = settings_for(pg_url, SCHEDULER_INTERVAL="1h", MESSAGE_BATCH_SIZE="2")
    async with bootstrap(settings, run_dispatcher=False):
        pass  # the schema, so that rows are waiting when the first slot is taken
    connection = await asyncpg.connect(pg_url)
    await connection.execute(INSERT, 3)
    async with bootstrap(settings):
        try:
            await sent(connection, 2)
            await connection.execute(INSERT, 3)
            await asyncio.sleep(1.5)
            assert await connection.fetchval("SELECT count(*) FROM messages WHERE status = 'SUCCESS'") == 2
        finally:
            await connection.close()
