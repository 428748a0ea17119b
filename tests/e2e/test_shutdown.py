"""SIGTERM while sends are in flight: they finish, unstarted claims go back at once, exit code 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from sms_dispatch.simulator import SimulatorConfig, start_simulator
from tests.e2e.conftest import ServiceProcess, free_port, wait_until_healthy
from tests.e2e.lifecycle import fetch_rows, insert_pending, migrate, service_env, status_counts, wait_for

BATCH = 40
WORKERS = 4
LATENCY_S = 4.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_sigterm_finishes_in_flight_and_hands_back_the_rest(
    command: str, pg_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """In-flight sends end SUCCESS; the other claims are PENDING with the attempt refunded before they end."""
    async with start_simulator(SimulatorConfig(latency_ms=LATENCY_S * 1000)) as simulator:
        port = free_port()
        env = service_env(
            pg_url,
            simulator.url,
            API_PORT=str(port),
            SCHEDULER_INTERVAL="1m",
            SCHEDULER_BATCH_TIMEOUT="30s",
            MESSAGE_PER_MESSAGE_TIMEOUT="10s",
            MESSAGE_BATCH_SIZE=str(BATCH),
            MESSAGE_MAX_WORKERS=str(WORKERS),
        )
        migrate(env, tmp_path)
        await insert_pending(pg_url, BATCH)
        service = ServiceProcess([command], env, tmp_path)
        processes.append(service)
        if command == "serve":
            await wait_until_healthy(f"http://127.0.0.1:{port}", service, timeout_s=30)

        async def batch_claimed() -> bool:
            assert service.proc.poll() is None, service.output()
            return (await status_counts(pg_url))["SENDING"] == BATCH

        await wait_for(batch_claimed, 30, "the batch to be claimed")
        await asyncio.sleep(0.5)  # the pool starts its first WORKERS sends right after the claim
        service.proc.terminate()

        async def handed_back() -> bool:
            return (await status_counts(pg_url))["PENDING"] == BATCH - WORKERS

        await wait_for(handed_back, LATENCY_S * 2, "the unstarted claims to be handed back")
        answered_at_hand_back = len(simulator.requests)
        code = await asyncio.to_thread(service.proc.wait, 30)  # a second SIGTERM would force uvicorn out
        service.terminate()  # closes the log
        requests = simulator.requests

    rows = await fetch_rows(pg_url)
    sent = [r for r in rows if r["status"] == "SUCCESS"]
    back = [r for r in rows if r["status"] == "PENDING"]
    print(f"\nshutdown ({command}): in flight={len(sent)} handed back={len(back)} exit={code}")
    assert code == 0, service.output()
    assert answered_at_hand_back == 0, "the claims went back only after the sends in flight ended"
    assert len(sent) == len(requests) == WORKERS, "an in-flight send was cut off, or a new one started"
    assert all(r["attempts"] == 1 for r in sent)
    assert len(back) == BATCH - WORKERS and all(r["attempts"] == 0 for r in back)
    conn = await asyncpg.connect(pg_url)
    leftovers = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE claim_token IS NOT NULL OR lease_until IS NOT NULL"
    )
    await conn.close()
    assert leftovers == 0
