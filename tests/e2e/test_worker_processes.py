"""``sms-dispatch worker --processes N``: several dispatcher processes as one fleet, drained by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import pytest

from sms_dispatch.simulator import start_simulator
from tests.e2e.conftest import ServiceProcess, clean_env, run_cli

ROWS = 600


def children_of(pid: int) -> list[int]:
    """Return the pids of a process's children (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(each) for each in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Return True while process ``pid`` exists."""
    return Path(f"/proc/{pid}").exists()


def test_processes_beyond_one_are_refused_on_sqlite(tmp_path: Path) -> None:
    """On the embedded SQLite database --processes 2 stops at once with a message saying why."""
    env = clean_env({"SQLITE_PATH": str(tmp_path / "one.db"), "SEED_ON_FIRST_RUN": "0"})
    result = run_cli(["worker", "--processes", "2"], env, tmp_path)
    assert result.returncode == 2
    assert "needs PostgreSQL" in result.stderr


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_two_processes_drain_the_queue_as_one_fleet_and_stop_together(
    pg_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Two children named <name>-1 and <name>-2 share the queue; SIGTERM to the parent ends both."""
    async with start_simulator() as simulator:
        env = clean_env(
            {
                "DATABASE_URL": pg_url,
                "SMS_PROVIDER_URL": simulator.url,
                "SCHEDULER_INTERVAL": "0",
                "MESSAGE_BATCH_SIZE": "20",
                "MESSAGE_MAX_WORKERS": "4",
                "INSTANCE_NAME": "e2e",
                "APP_ENV": "production",
            }
        )
        assert run_cli(["migrate"], env, tmp_path).returncode == 0
        connection = await asyncpg.connect(pg_url)
        try:
            await connection.execute(
                "INSERT INTO messages (\"to\", content) SELECT '+905551111111', 'm' || g"
                " FROM generate_series(1, $1) AS g",
                ROWS,
            )
            service = ServiceProcess(["worker", "--processes", "2"], env, tmp_path)
            processes.append(service)
            deadline = time.monotonic() + 60
            names: set[str] = set()
            while names != {"e2e-1", "e2e-2"} or await connection.fetchval(
                "SELECT count(*) FROM messages WHERE status <> 'SUCCESS'"
            ):
                assert time.monotonic() < deadline, service.output()
                assert service.proc.poll() is None, service.output()
                names |= {row["name"] for row in await connection.fetch("SELECT name FROM instances")}
                await asyncio.sleep(0.1)
            children = children_of(service.proc.pid)
            assert len(children) == 2
            assert service.terminate(timeout_s=60) == 0, service.output()
            assert not any(alive(child) for child in children)
            assert await connection.fetchval("SELECT count(DISTINCT message_id) FROM messages") == ROWS
        finally:
            await connection.close()
    assert len(simulator.requests) == ROWS
    # Every JSON line names the process it came from: the parent, or child 1 or 2.
    lines = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    assert {line.get("instance") for line in lines} == {"e2e", "e2e-1", "e2e-2"}
    running = {line["instance"] for line in lines if line["event"] == "dispatcher running"}
    assert running == {"e2e-1", "e2e-2"}
