"""Outages mid-run: Redis down (a private redis-server killed) and PostgreSQL cut off.

Nothing here stops or restarts the machine's PostgreSQL or Redis, which other work shares: the
service reaches PostgreSQL through a TCP proxy of the test's own (``tests/tcp_proxy.py``), whose
``cut()`` does to the service what a restart would, and Redis is a private redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
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
from tests.tcp_proxy import TcpProxy

PG_HOST_PORT = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]


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


def proxied(pg_url: str, proxy: TcpProxy) -> str:
    """Return ``pg_url`` through ``proxy``: cut it, and the service loses PostgreSQL, as in a restart."""
    return pg_url.replace(PG_HOST_PORT, f"127.0.0.1:{proxy.port}")


@pytest.fixture
def postgres_proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the machine's PostgreSQL for this test's service alone."""
    host, port = PG_HOST_PORT.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        yield proxy


@pytest.mark.timeout(180)
async def test_postgres_restart_mid_run_loses_nothing(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess], postgres_proxy: TcpProxy
) -> None:
    """PostgreSQL "restarted" mid-run: cut off for 3 s by the test's proxy (every connection closed,
    new ones refused, as a restart does to the service): the worker keeps running, reconnects, and
    every message goes out, none twice beyond one record group."""
    rows_total, batch, workers, outage_s = 2000, 100, 10, 3.0
    # About 200 sends a second (10 in flight, 50 ms each): the run spans the outage.
    async with start_simulator(SimulatorConfig(latency_ms=50)) as simulator:
        env = service_env(
            proxied(pg_url, postgres_proxy),
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
        postgres_proxy.cut()
        await asyncio.sleep(outage_s)
        postgres_proxy.restore()
        sent_by_outage_end = len(simulator.requests)

        async def all_sent() -> bool:
            assert service.proc.poll() is None, service.output()
            return (await status_counts(pg_url))["SUCCESS"] == rows_total

        await wait_for(all_sent, 120, "every message to be delivered after the outage")
        code = service.terminate()
        requests = simulator.requests

    rows = await fetch_rows(pg_url)
    provider = tally(requests)
    print(
        f"\npostgres outage: {outage_s:.1f}s; messages={rows_total} sent by the end of the outage="
        f"{sent_by_outage_end} requests={provider.requests} duplicates={provider.duplicates}"
        f" attempts_total={sum(r['attempts'] for r in rows)}; connections through the proxy="
        f"{postgres_proxy.connections_made}"
    )
    assert sent_by_outage_end < rows_total, "the run ended before the outage: nothing was tested"
    assert code == 0, service.output()
    assert len(rows) == rows_total and all(r["status"] == "SUCCESS" for r in rows), "a message was lost"
    assert provider.messages == rows_total
    assert provider.duplicates <= batch + workers, "more duplicates than one record group and its sends"
    assert_keys_match_rows(requests, rows)


OPERATE_KEY = "outage-operate-key-0123456789"


@pytest.mark.timeout(120)
async def test_a_database_outage_mid_request_is_a_503_then_two_log_lines(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess], postgres_proxy: TcpProxy
) -> None:
    """The database cut off while a request waits on it: that request and the next get the 503
    envelope; the first after restore() a 200. The API logs the outage in two lines, no traceback."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with start_simulator(SimulatorConfig(latency_ms=5)) as simulator:
        env = service_env(
            proxied(pg_url, postgres_proxy),
            simulator.url,
            API_PORT=str(port),
            APP_ENV="production",  # JSON lines, one per record, tracebacks in an "exception" field
            API_KEYS=f"{OPERATE_KEY}:operate",
        )
        migrate(env, tmp_path)
        service = ServiceProcess(["serve"], env, tmp_path)
        processes.append(service)
        await wait_until_healthy(base, service, timeout_s=30)
        key = {"Authorization": f"Bearer {OPERATE_KEY}"}
        async with httpx.AsyncClient(base_url=base, headers=key, timeout=30) as http:
            assert (await http.get("/messages/sent")).status_code == 200
            async with messages_locked(pg_url):
                waiting = asyncio.create_task(http.get("/messages/sent"))
                await wait_for(lambda: listing_waits_on_lock(pg_url), 10, "the listing to wait on the lock")
                postgres_proxy.cut()
                mid_request = await waiting
            during = await http.get("/stats")
            postgres_proxy.restore()
            after = await http.get("/messages/sent")
        code = service.terminate()
    output = service.output()

    for response in (mid_request, during):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert (error["code"], error["type"]) == (503, "DEPENDENCY_UNAVAILABLE"), error
    assert after.status_code == 200, after.text
    assert code == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    api = [line for line in lines if str(line.get("logger", "")).startswith(API_LOGGERS)]
    outage = [(line["level"], line["event"]) for line in api if line["logger"] == "sms_dispatch.api.outages"]
    others = [line["logger"] for line in lines if line not in api and "exception" in line]
    print(f"\ndatabase outage mid-request: API lines={len(api)}, tracebacks outside the API={others}")
    assert outage == [("warning", "database unavailable"), ("info", "database available again")], outage
    assert not [line for line in api if "exception" in line], "the API logged a traceback"
    assert "Traceback" not in "".join(line for line in output.splitlines() if not line.startswith("{"))


API_LOGGERS = ("sms_dispatch.api", "sms_dispatch.access", "uvicorn")


@contextlib.asynccontextmanager
async def messages_locked(pg_url: str) -> AsyncIterator[None]:
    """Hold an exclusive lock on ``messages`` (directly, not through the proxy) while inside."""
    connection = await asyncpg.connect(pg_url)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def listing_waits_on_lock(pg_url: str) -> bool:
    """Return True when a session of the service waits for a lock (the listing behind ours)."""
    connection = await asyncpg.connect(pg_url)
    try:
        waiting: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'sms-dispatch' AND wait_event_type = 'Lock'"
            " AND query LIKE '%message_counts%'"  # the listing's statement, not the dispatcher's
        )
    finally:
        await connection.close()
    return waiting > 0
