"""The real ``sms-dispatch serve`` process against PostgreSQL, Redis and the simulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as aioredis

from sms_dispatch.simulator import ReceivedRequest, start_simulator
from tests.e2e.conftest import ServiceProcess, clean_env, free_port, run_cli, wait_until_healthy

INTERVAL_S = 1.0
BATCH = 2
ROWS = 7


async def wait_for_requests(requests: list[ReceivedRequest], count: int, timeout_s: float) -> None:
    """Wait until the simulator has received ``count`` requests."""
    deadline = time.monotonic() + timeout_s
    while len(requests) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_service_sends_on_schedule_and_obeys_stop_start(
    pg_url: str, redis_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Rows inserted by plain SQL go out BATCH per interval, oldest first, once each, cached, listed."""
    async with start_simulator() as simulator:
        port = free_port()
        env = clean_env(
            {
                "DATABASE_URL": pg_url,
                "REDIS_URL": redis_url,
                "SMS_PROVIDER_URL": simulator.url,
                "SMS_PROVIDER_KEY": "test-key",
                "SCHEDULER_INTERVAL": f"{int(INTERVAL_S * 1000)}ms",
                "MESSAGE_BATCH_SIZE": str(BATCH),
                "API_PORT": str(port),
                "CACHE_TTL": "1h",
            }
        )
        migrated = run_cli(["migrate"], env, tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        conn = await asyncpg.connect(pg_url)
        for i in range(ROWS):
            await conn.execute(
                'INSERT INTO messages ("to", content) VALUES ($1, $2)', "+905551111111", f"message {i}"
            )
        service = ServiceProcess(["serve"], env, tmp_path)
        processes.append(service)
        base = f"http://127.0.0.1:{port}"
        await wait_until_healthy(base, service)
        async with httpx.AsyncClient(base_url=base) as http:
            await wait_for_requests(simulator.requests, 4, timeout_s=INTERVAL_S * 4)
            assert (await http.post("/scheduler", json={"action": "stop"})).json()["data"][
                "message"
            ] == "scheduler stopped"
            sent_at_stop = len(simulator.requests)
            await asyncio.sleep(INTERVAL_S * 2.5)
            assert len(simulator.requests) == sent_at_stop, "a stopped scheduler sent"
            stopped = (await http.get("/scheduler")).json()["data"]
            assert (stopped["running"], stopped["providerSimulator"]) == (False, False)
            assert (await http.post("/scheduler", json={"action": "start"})).status_code == 200
            await wait_for_requests(simulator.requests, ROWS, timeout_s=INTERVAL_S * 8)
            await asyncio.sleep(INTERVAL_S * 1.5)
            listing = (await http.get("/messages/sent?limit=100")).json()["data"]

        requests = list(simulator.requests)
        # The two sends of a batch run side by side, so only the batches' order is fixed.
        batches = [{r.content for r in requests[i : i + BATCH]} for i in range(0, ROWS, BATCH)]
        expected = [{f"message {j}" for j in range(i, min(i + BATCH, ROWS))} for i in range(0, ROWS, BATCH)]
        assert batches == expected, "not oldest first, or a message resent"
        assert all(r.status == 202 and r.auth_key == "test-key" for r in requests)
        keys = [r.idempotency_key for r in requests]
        assert len(set(keys)) == ROWS, "a message was sent twice"
        for first, third in zip(requests, requests[BATCH:], strict=False):
            gap_s = (third.received_at - first.received_at).total_seconds()
            assert gap_s >= INTERVAL_S * 0.8, f"more than {BATCH} sends within one interval ({gap_s:.2f}s)"

        rows = await conn.fetch("SELECT id, status, message_id, sent_at FROM messages ORDER BY created_at")
        await conn.close()
        assert all(row["status"] == "SUCCESS" for row in rows)
        by_key = {r.idempotency_key: r.provider_message_id for r in requests}
        assert all(by_key[str(row["id"])] == row["message_id"] for row in rows)

        cache = aioredis.from_url(redis_url, decode_responses=True)
        for row in rows:
            key = f"sent_messages:{row['message_id']}"
            assert await cache.get(key), f"{key} missing"
            assert 3500 < await cache.ttl(key) <= 3600
        await cache.aclose()

        assert listing["total"] == ROWS
        assert [i["messageId"] for i in listing["items"]] == [
            row["message_id"] for row in sorted(rows, key=lambda r: (r["sent_at"], r["id"]), reverse=True)
        ]
        assert service.terminate() == 0, service.output()


async def test_bare_machine_run_uses_embedded_defaults(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """With no configuration: SQLite, sample messages seeded, simulator started, first batch at once."""
    port = free_port()
    service = ServiceProcess(["serve", "--port", str(port)], clean_env({}), tmp_path)
    processes.append(service)
    base = f"http://127.0.0.1:{port}"
    await wait_until_healthy(base, service)
    async with httpx.AsyncClient(base_url=base) as http:
        deadline = time.monotonic() + 10
        total = 0
        while time.monotonic() < deadline and total < 2:
            total = (await http.get("/messages/sent")).json()["data"]["total"]
            await asyncio.sleep(0.1)
        status = (await http.get("/scheduler")).json()["data"]
    assert total == 2, service.output()
    assert status["interval"] == "2m" and status["batchSize"] == 2
    assert status["providerSimulator"] is True
    assert (tmp_path / "sms-dispatch.db").exists()
    code = service.terminate()
    output = service.output()
    assert code == 0, output
    assert "sending to the built-in provider simulator: nothing is delivered" in output
    assert "seeded sample messages" in output
    assert output.count("message sent") == 2
