"""A fleet: three ``sms-dispatch serve`` processes on one PostgreSQL share the work, the rate and the switch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from sms_dispatch.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.e2e.conftest import ServiceProcess, free_port, wait_until_healthy
from tests.e2e.lifecycle import (
    assert_keys_match_rows,
    fetch_rows,
    insert_pending,
    migrate,
    sends_by_instance,
    service_env,
    status_counts,
    tally,
    wait_for,
)

FLEET = 3


async def start_fleet(
    env: dict[str, str], tmp_path: Path, processes: list[ServiceProcess]
) -> tuple[list[ServiceProcess], list[str]]:
    """Start FLEET ``serve`` processes, each on its own port; return them and their base URLs."""
    fleet, bases = [], []
    for n in range(FLEET):
        port = free_port()
        service = ServiceProcess(
            ["serve"], {**env, "API_PORT": str(port), "INSTANCE_NAME": f"fleet-{n}"}, tmp_path
        )
        processes.append(service)
        fleet.append(service)
        bases.append(f"http://127.0.0.1:{port}")
    for service, base in zip(fleet, bases, strict=True):
        await wait_until_healthy(base, service, timeout_s=30)
    return fleet, bases


async def switch(base: str, action: str) -> None:
    """Flip the fleet-wide switch through one instance's API."""
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{base}/scheduler", json={"action": action})
    assert response.status_code == 200, response.text


@pytest.mark.timeout(150)
async def test_fleet_sends_each_message_once(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Three instances draining 3,000 messages continuously: every one delivered, none sent twice."""
    rows_total = 3000
    async with start_simulator(SimulatorConfig(latency_ms=5)) as simulator:
        env = service_env(
            pg_url,
            simulator.url,
            SCHEDULER_INTERVAL="0",
            MESSAGE_BATCH_SIZE="100",
            MESSAGE_MAX_WORKERS="20",
        )
        migrate(env, tmp_path)
        fleet, _ = await start_fleet(env, tmp_path, processes)
        await insert_pending(pg_url, rows_total)  # all three are idle: the insert wakes them all

        async def all_sent() -> bool:
            return (await status_counts(pg_url))["SUCCESS"] == rows_total

        await wait_for(all_sent, 120, "every message to be delivered")
        codes = [service.terminate() for service in fleet]
        requests = simulator.requests

    rows = await fetch_rows(pg_url)
    provider = tally(requests)
    per_instance = await sends_by_instance(pg_url)
    print(f"\nfleet: messages={rows_total} requests={provider.requests} duplicates={provider.duplicates}")
    print(f"fleet: sends per instance={per_instance} attempts_total={sum(r['attempts'] for r in rows)}")
    assert codes == [0] * FLEET, [s.output()[-2000:] for s in fleet]
    assert all(r["status"] == "SUCCESS" and r["attempts"] == 1 for r in rows)
    assert (provider.requests, provider.messages, provider.duplicates) == (rows_total, rows_total, 0)
    assert len(requests) == rows_total
    assert_keys_match_rows(requests, rows)
    assert sorted(per_instance) == [f"fleet-{n}" for n in range(FLEET)], (
        f"an instance never sent: {per_instance}"
    )
    assert sum(per_instance.values()) == rows_total


@pytest.mark.timeout(150)
async def test_stop_on_one_instance_stops_the_draining_fleet(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Continuous mode: a stop through one instance halts all three; a start through another resumes."""
    rows_total, batch, workers = 3000, 100, 10
    async with start_simulator(SimulatorConfig(latency_ms=20)) as simulator:
        env = service_env(
            pg_url,
            simulator.url,
            SCHEDULER_INTERVAL="0",
            MESSAGE_BATCH_SIZE=str(batch),
            MESSAGE_MAX_WORKERS=str(workers),
        )
        migrate(env, tmp_path)
        fleet, bases = await start_fleet(env, tmp_path, processes)
        await insert_pending(pg_url, rows_total)
        await wait_for(lambda: _has_requests(simulator, rows_total // 5), 60, "a fifth of the sends")
        await switch(bases[0], "stop")
        stopped_at = datetime.now(UTC)
        settled = stopped_at + timedelta(seconds=3)
        await asyncio.sleep(5)
        after_stop = received_between(simulator, stopped_at, stopped_at + timedelta(days=1))
        late = received_between(simulator, settled, settled + timedelta(days=1))
        counts_stopped = await status_counts(pg_url)
        await switch(bases[2], "start")

        async def all_sent() -> bool:
            return (await status_counts(pg_url))["SUCCESS"] == rows_total

        await wait_for(all_sent, 120, "every message to be delivered after the start")
        codes = [service.terminate() for service in fleet]
        provider = tally(simulator.requests)

    print(f"\nfleet stop (continuous): {after_stop} sends after the stop returned, {late} after 3 s")
    print(f"fleet stop (continuous): while stopped {dict(counts_stopped)}; duplicates={provider.duplicates}")
    assert codes == [0] * FLEET
    assert counts_stopped["SENDING"] == 0, "claims were kept while stopped"
    assert counts_stopped["PENDING"] > 0, "the fleet drained before the stop: nothing was tested"
    # Each instance may finish what it had claimed before it saw the switch: one claim and its sends.
    assert after_stop <= FLEET * (batch + workers)
    assert late == 0, "an instance kept sending after the stop"
    assert (provider.messages, provider.duplicates) == (rows_total, 0)


INTERVAL_S = 1.0
BATCH = 5


def received_between(simulator: RunningSimulator, start: datetime, end: datetime) -> int:
    """Return how many requests the simulator received in [start, end)."""
    return sum(1 for r in simulator.requests if start <= r.received_at < end)


@pytest.mark.timeout(120)
async def test_fleet_holds_one_rate_and_obeys_one_stop(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Three instances send BATCH per interval between them, not each; a stop on one stops all."""
    async with start_simulator() as simulator:
        env = service_env(
            pg_url,
            simulator.url,
            SCHEDULER_INTERVAL=f"{int(INTERVAL_S * 1000)}ms",
            MESSAGE_BATCH_SIZE=str(BATCH),
            MESSAGE_MAX_WORKERS=str(BATCH),
        )
        migrate(env, tmp_path)
        await insert_pending(pg_url, 500)
        fleet, bases = await start_fleet(env, tmp_path, processes)

        # The rate: over a window of whole intervals the fleet sends at most one batch per interval.
        window_s = 5 * INTERVAL_S
        await wait_for(lambda: _has_requests(simulator, 1), 30, "the first send")
        window_start = datetime.now(UTC)
        await asyncio.sleep(window_s)
        in_window = received_between(simulator, window_start, window_start + timedelta(seconds=window_s))
        requests = simulator.requests
        times = [r.received_at for r in requests]
        gaps_s = [
            (later - earlier).total_seconds()
            for earlier, later in zip(times, times[2 * BATCH :], strict=False)
        ]

        # The switch: stop through the third instance; no instance starts a batch after that.
        await switch(bases[2], "stop")
        stopped_at = datetime.now(UTC)
        await asyncio.sleep(3.5 * INTERVAL_S)
        after_stop = received_between(simulator, stopped_at, datetime.now(UTC) + timedelta(days=1))
        late = received_between(
            simulator, stopped_at + timedelta(seconds=2 * INTERVAL_S), datetime.now(UTC) + timedelta(days=1)
        )
        async with httpx.AsyncClient() as http:
            running = [(await http.get(f"{base}/scheduler")).json()["data"]["running"] for base in bases]
        codes = [service.terminate() for service in fleet]

    print(f"\nfleet rate: {in_window} sends in {window_s:.0f}s (limit {BATCH}/{INTERVAL_S:g}s for the fleet)")
    print(f"fleet stop: {after_stop} sends after the stop returned, {late} later than 2 intervals")
    assert codes == [0] * FLEET
    assert BATCH <= in_window <= BATCH * (window_s / INTERVAL_S + 1), in_window
    assert min(gaps_s) >= INTERVAL_S, f"three batches within one interval: {min(gaps_s):.3f}s"
    assert running == [False] * FLEET
    assert after_stop <= BATCH, "a batch started after the stop"
    assert late == 0


async def _has_requests(simulator: RunningSimulator, count: int) -> bool:
    return len(simulator.requests) >= count
