"""Outages mid-run: Redis down (a private redis-server) and PostgreSQL restarted.

The PostgreSQL test restarts the machine's shared server, so it is marked
``restarts_postgres`` and runs after every other test (``tests/conftest.py``); other tests
running at the same moment on this machine may fail during its few seconds of restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from sms_dispatch.simulator import SimulatorConfig, start_simulator
from tests.conftest import PG_ADMIN_URL
from tests.e2e.conftest import ServiceProcess, free_port, wait_until_healthy
from tests.e2e.lifecycle import (
    assert_keys_match_rows,
    fetch_rows,
    insert_pending,
    migrate,
    service_env,
    status_counts,
    tally,
    wait_for,
)
from tests.redis_server import RedisServer


async def scrape(base: str, name: str) -> float:
    """Return the value of one sample of the service's Prometheus metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


async def cached_ids(url: str, provider_ids: list[str]) -> set[str]:
    """Return the provider message ids that have a ``sent_messages:`` entry in Redis."""
    client = aioredis.from_url(url, decode_responses=True)
    try:
        values = await client.mget([f"sent_messages:{i}" for i in provider_ids])
    finally:
        await client.aclose()
    return {i for i, value in zip(provider_ids, values, strict=True) if value}


@pytest.mark.timeout(150)
async def test_redis_outage_slows_nothing_and_loses_nothing(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess], private_redis: RedisServer
) -> None:
    """Redis killed mid-run: sending goes on, failed cache writes are counted, and written once it is back."""
    per_phase = 500
    async with start_simulator(SimulatorConfig(latency_ms=5)) as simulator:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = service_env(
            pg_url,
            simulator.url,
            REDIS_URL=private_redis.url,
            API_PORT=str(port),
            SCHEDULER_INTERVAL="0",
            MESSAGE_BATCH_SIZE="50",
            MESSAGE_MAX_WORKERS="10",
        )
        migrate(env, tmp_path)
        service = ServiceProcess(["serve"], env, tmp_path)
        processes.append(service)
        await wait_until_healthy(base, service, timeout_s=30)

        async def delivered(count: int) -> bool:
            assert service.proc.poll() is None, service.output()
            counts = await status_counts(pg_url)
            assert counts["FAILED"] == 0, counts
            return counts["SUCCESS"] == count

        up_started = time.monotonic()
        await insert_pending(pg_url, per_phase, prefix="before")
        await wait_for(lambda: delivered(per_phase), 60, "the first messages")
        up_s = time.monotonic() - up_started
        failures_before = await scrape(base, "sms_dispatch_cache_write_failures_total")

        private_redis.kill()
        down_started = time.monotonic()
        await insert_pending(pg_url, per_phase, prefix="during")
        await wait_for(lambda: delivered(2 * per_phase), 60, "the messages sent while Redis was down")
        down_s = time.monotonic() - down_started
        failures_during = await scrape(base, "sms_dispatch_cache_write_failures_total")
        async with httpx.AsyncClient() as http:
            ready_during = await http.get(f"{base}/ready")

        private_redis.start()  # empty: the entries written before the outage died with it
        rows = await fetch_rows(pg_url)
        kept = [r["message_id"] for r in rows if r["content"].startswith("during")]

        async def all_cached() -> bool:
            assert service.proc.poll() is None, service.output()
            return len(await cached_ids(private_redis.url, kept)) == len(kept)

        await wait_for(all_cached, 60, "the entries kept during the outage to reach Redis")
        code = service.terminate()
        requests = simulator.requests

    print(
        f"\nredis outage: messages={2 * per_phase} cache write failures counted="
        f"{failures_during - failures_before:.0f} requests={len(requests)};"
        f" {per_phase} sent in {up_s:.1f}s with Redis up, {down_s:.1f}s with it down (not asserted)"
    )
    assert code == 0, service.output()
    assert failures_before == 0
    assert 0 < failures_during - failures_before <= per_phase
    # Still ready: Redis is reported, with what waits for it, but does not take the instance out.
    assert ready_during.status_code == 200, ready_during.text
    ready = ready_during.json()["data"]
    assert (ready["database"], ready["redis"]) == ("ok", "degraded")
    assert ready["cacheBacklog"] == failures_during - failures_before
    assert tally(requests).duplicates == 0 and len(requests) == 2 * per_phase
    assert all(r["status"] == "SUCCESS" and r["attempts"] == 1 for r in rows)
    assert_keys_match_rows(requests, rows)


PG_CLUSTER = ("15", "main")


def _pg_ctl(action: str) -> subprocess.CompletedProcess[str]:
    version = next(iter(sorted(os.listdir("/etc/postgresql"))), PG_CLUSTER[0])
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, PG_CLUSTER[1], action]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


async def _postgres_answers() -> bool:
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=2)
        await conn.close()
        return True
    return False


@contextlib.asynccontextmanager
async def postgres_back_afterwards() -> AsyncIterator[None]:
    """Whatever happens inside, leave the shared PostgreSQL running and answering."""
    try:
        yield
    finally:
        if _pg_ctl("status").returncode != 0:
            _pg_ctl("start")
        deadline = time.monotonic() + 60
        while not await _postgres_answers() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)


@pytest.mark.restarts_postgres
@pytest.mark.timeout(180)
async def test_postgres_restart_mid_run_loses_nothing(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """PostgreSQL restarted mid-run: the worker keeps running, reconnects, and every message goes out."""
    rows_total, batch, workers = 2000, 100, 10
    # About 200 sends a second (10 in flight, 50 ms each): the run spans the restart.
    async with start_simulator(SimulatorConfig(latency_ms=50)) as simulator:
        env = service_env(
            pg_url,
            simulator.url,
            SCHEDULER_INTERVAL="0",
            SCHEDULER_BATCH_TIMEOUT="2s",
            MESSAGE_PER_MESSAGE_TIMEOUT="1s",
            MESSAGE_LEASE_MARGIN="1s",
            MESSAGE_BATCH_SIZE=str(batch),
            MESSAGE_MAX_WORKERS=str(workers),
            MESSAGE_RETRY_BASE="100ms",
        )
        migrate(env, tmp_path)
        await insert_pending(pg_url, rows_total)
        service = ServiceProcess(["worker"], env, tmp_path)
        processes.append(service)

        async def some_sent() -> bool:
            assert service.proc.poll() is None, service.output()
            return len(simulator.requests) >= rows_total // 5

        await wait_for(some_sent, 60, "a fifth of the messages to go out")
        async with postgres_back_afterwards():
            restart_started = time.monotonic()
            restarted = await asyncio.to_thread(_pg_ctl, "restart")
            restart_s = time.monotonic() - restart_started
        assert restarted.returncode == 0, restarted.stderr
        sent_by_restart_end = len(simulator.requests)

        async def all_sent() -> bool:
            assert service.proc.poll() is None, service.output()
            try:
                return (await status_counts(pg_url))["SUCCESS"] == rows_total
            except (OSError, asyncpg.PostgresError):
                return False

        await wait_for(all_sent, 120, "every message to be delivered after the restart")
        code = service.terminate()
        requests = simulator.requests

    rows = await fetch_rows(pg_url)
    provider = tally(requests)
    print(
        f"\npostgres restart: {restart_s:.1f}s; messages={rows_total} sent by the end of the restart="
        f"{sent_by_restart_end} requests={provider.requests} duplicates={provider.duplicates}"
        f" attempts_total={sum(r['attempts'] for r in rows)}; database errors logged and retried="
        f"{_count_database_errors(service.output())}"
    )
    assert sent_by_restart_end < rows_total, "the run ended before the restart: nothing was tested"
    assert code == 0, service.output()
    assert len(rows) == rows_total and all(r["status"] == "SUCCESS" for r in rows), "a message was lost"
    assert provider.messages == rows_total
    assert provider.duplicates <= batch + workers, "more duplicates than one record group and its sends"
    assert_keys_match_rows(requests, rows)


def _count_database_errors(output: str) -> int:
    """Count the log lines where the worker met the database away and retried."""
    return sum(1 for line in output.splitlines() if "failed; retrying" in line or "will be rescued" in line)
