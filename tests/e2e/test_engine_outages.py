"""A database cut off from a running worker: one line when it goes and one when it is back, per place.

The worker reaches PostgreSQL through a TCP proxy of the test's own (``tests/tcp_proxy.py``),
cut for 7 seconds (every connection closed, new ones refused, as a restart would) and then
restored; the shared server is never touched. Each place of the engine that meets the outage
logs ``database unavailable`` once and ``database available again`` once, no traceback, and
every message is delivered once.

- Continuous mode, cut while sends are in flight: their results wait (``recording results``),
  the idle pump's claims fail (``claiming``), and the heartbeat and retention fail.
- Scheduled mode, cut while idle: the batch tick fails (``dispatcher tick``), and the
  heartbeat and retention.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from sms_dispatch.simulator import SimulatorConfig, start_simulator
from tests.e2e.conftest import ServiceProcess
from tests.e2e.lifecycle import insert_pending, migrate, service_env, status_counts, tally, wait_for
from tests.tcp_proxy import TcpProxy

CUT_S = 7.0
"""Longer than the heartbeat's 5 s period, so a beat meets the outage whenever it starts."""
GONE, BACK = "database unavailable", "database available again"


def outage_lines(output: str) -> Counter[tuple[str, str]]:
    """Count the outage lines of a JSON log by (event, place)."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["event"] in (GONE, BACK):
                counts[(record["event"], record["doing"])] += 1
    return counts


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("interval", "in_flight", "places"),
    [
        ("0", True, {"claiming", "recording results", "heartbeat", "pruning"}),
        ("500ms", False, {"dispatcher tick", "heartbeat", "pruning"}),
    ],
    ids=["continuous-sending", "scheduled-idle"],
)
async def test_a_cut_database_is_two_lines_per_place_and_loses_nothing(
    interval: str,
    in_flight: bool,
    places: set[str],
    pg_url: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    """Cut for 7 s and restored: one line each way per place, no traceback, every message sent once."""
    with TcpProxy("127.0.0.1", 5432) as proxy:
        proxied_url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert proxied_url != pg_url
        async with start_simulator(SimulatorConfig(latency_ms=1000)) as simulator:
            env = service_env(
                proxied_url,
                simulator.url,
                APP_ENV="production",  # JSON lines
                SCHEDULER_INTERVAL=interval,
                MESSAGE_BATCH_SIZE="10",
                MESSAGE_MAX_WORKERS="10",
                RETENTION_INTERVAL="1s",
            )
            migrate(env, tmp_path)
            worker = ServiceProcess(["worker"], env, tmp_path)
            processes.append(worker)

            async def counted(status: str, n: int) -> bool:
                assert worker.proc.poll() is None, worker.output()
                return (await status_counts(pg_url))[status] == n

            await insert_pending(pg_url, 10, prefix="before")
            await wait_for(lambda: counted("SUCCESS", 10), 60, "the first messages")
            if in_flight:
                await insert_pending(pg_url, 10, prefix="in flight")
                await wait_for(lambda: counted("SENDING", 10), 30, "sends in flight")
            proxy.cut()
            await insert_pending(
                pg_url, 10, prefix="during"
            )  # straight to the server: the worker cannot see it
            await asyncio.sleep(CUT_S)
            proxy.restore()
            total = 30 if in_flight else 20
            await wait_for(lambda: counted("SUCCESS", total), 60, "every message after the restore")

            async def every_place_back() -> bool:
                # The heartbeat notices only at its next beat, up to 5 s after the restore.
                lines = outage_lines(worker.output())
                return all(lines[(BACK, place)] >= n for (event, place), n in lines.items() if event == GONE)

            await wait_for(every_place_back, 30, "every place that lost the database to see it back")
            code = worker.terminate()
            requests = simulator.requests

    output = worker.output()
    lines = outage_lines(output)
    provider = tally(requests)
    print(f"\nengine outage ({interval=}, {in_flight=}): {dict(lines)}; requests={provider.requests}")
    assert code == 0, output
    assert "Traceback" not in output and '"exception"' not in output, output
    for place in places:
        assert (lines[(GONE, place)], lines[(BACK, place)]) == (1, 1), (place, dict(lines))
    assert all(n == 1 for n in lines.values()), dict(lines)
    assert {place for _, place in lines} == {place for event, place in lines if event == BACK}
    assert (provider.messages, provider.duplicates) == (total, 0)
