"""The real ``sms-dispatch`` command as a first user meets it: checks first, one clear line on failure.

Arguments and settings are checked before anything is opened or created; what cannot be used
(the database, a port, the schema) is one line and a non-zero exit, never a traceback; only
``serve`` and ``migrate`` change the schema; ``dispatch --once`` obeys the fleet's switch.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

from sms_dispatch import __version__
from sms_dispatch.adapters.database import build_head, create_engine
from sms_dispatch.simulator import start_simulator
from tests.e2e.conftest import clean_env, free_port, run_cli
from tests.e2e.lifecycle import insert_pending, service_env, status_counts
from tests.schema_helpers import migrate_to

HEAD = build_head()


def one_line(text: str) -> str:
    """Return the only line of ``text``, failing when there are more (or a traceback)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


async def move_to(pg_url: str, revision: str) -> None:
    """Leave the database at ``revision``, as an older build's migrate would."""
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+asyncpg"), pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate_to, revision)
    finally:
        await engine.dispose()


def test_version_names_the_build_and_its_schema(tmp_path: Path) -> None:
    """`--version` prints the version and the schema revision it needs, and opens nothing."""
    result = run_cli(["--version"], clean_env({}), tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"sms-dispatch {__version__} (database schema {HEAD})"
    assert list(tmp_path.iterdir()) == []


def test_send_rejects_a_bad_number_before_opening_anything(tmp_path: Path) -> None:
    """`send --to 123`: exit 2 naming the field; no database file, no simulator, nothing else."""
    result = run_cli(["send", "--to", "123", "--content", "hi"], clean_env({}), tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(
        "sms-dispatch: invalid message: to: must be in international format"
    )
    assert list(tmp_path.iterdir()) == []


def test_seed_on_a_fresh_folder_points_to_migrate_and_creates_nothing(tmp_path: Path) -> None:
    """`seed` before any `migrate` or `serve`: one line naming `sms-dispatch migrate`, exit 3."""
    result = run_cli(["seed", "--count", "5"], clean_env({}), tmp_path)
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert "database schema is at none" in line and "run `sms-dispatch migrate`" in line
    assert list(tmp_path.iterdir()) == []


def test_migrate_says_created_then_already_at_head_and_seed_counts_exactly(tmp_path: Path) -> None:
    """`migrate` twice: "created at", then "already at head"; `seed` then adds exactly what it says."""
    env = clean_env({})
    first, second = run_cli(["migrate"], env, tmp_path), run_cli(["migrate"], env, tmp_path)
    assert (first.returncode, first.stdout.strip()) == (0, f"database schema created at {HEAD}")
    assert (second.returncode, second.stdout.strip()) == (0, f"database schema already at head ({HEAD})")
    assert "Context impl" not in first.stderr + second.stderr
    seeded = run_cli(["seed", "--count", "5"], env, tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert seeded.stdout.startswith("seeded 5 messages in ")
    with sqlite3.connect(tmp_path / "sms-dispatch.db") as connection:
        assert connection.execute("SELECT count(*), min(validated) FROM messages").fetchone() == (5, 1)
    connection.close()


@pytest.mark.postgres
async def test_migrate_names_the_revisions_it_upgraded_between(pg_url: str, tmp_path: Path) -> None:
    """On a schema an older build left: "upgraded from 0009 to <head>"."""
    await move_to(pg_url, "0009")
    result = run_cli(["migrate"], clean_env({"DATABASE_URL": pg_url}), tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"database schema upgraded from 0009 to {HEAD}")


@pytest.mark.postgres
async def test_commands_that_do_not_migrate_refuse_an_older_schema(pg_url: str, tmp_path: Path) -> None:
    """`worker`, `dispatch`, `seed`, `prune` leave an older schema alone and say what to run."""
    await move_to(pg_url, "0009")
    env = service_env(pg_url, "simulator")
    for command in (["worker"], ["dispatch", "--once"], ["seed"], ["prune"]):
        result = run_cli(command, env, tmp_path)
        assert result.returncode == 3, (command, result.stderr)
        assert one_line(result.stderr) == (
            f"sms-dispatch: database schema is at 0009, this version needs {HEAD}: run `sms-dispatch migrate`"
        )
    conn = await asyncpg.connect(pg_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == "0009"
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_dispatch_once_refuses_while_the_fleet_is_stopped_unless_forced(
    pg_url: str, tmp_path: Path
) -> None:
    """With the switch off: exit 1 and nothing sent; with --force one batch goes out."""
    async with start_simulator() as simulator:
        env = service_env(pg_url, simulator.url, MESSAGE_BATCH_SIZE="2")
        assert run_cli(["migrate"], env, tmp_path).returncode == 0
        await insert_pending(pg_url, 3)
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE scheduler_state SET running = false")
        finally:
            await conn.close()
        # In a thread: the simulator answers from this test's event loop.
        refused = await asyncio.to_thread(run_cli, ["dispatch", "--once"], env, tmp_path)
        assert refused.returncode == 1
        assert "--force" in refused.stderr.splitlines()[-1]
        assert simulator.requests == [] and (await status_counts(pg_url))["PENDING"] == 3
        forced = await asyncio.to_thread(run_cli, ["dispatch", "--once", "--force"], env, tmp_path)
        assert forced.returncode == 0, forced.stderr
        assert len(simulator.requests) == 2 and (await status_counts(pg_url))["SUCCESS"] == 2


@pytest.mark.postgres
async def test_serve_that_cannot_listen_sends_nothing(pg_url: str, tmp_path: Path) -> None:
    """The port taken and rows waiting: one line naming the address, exit 3, not a message sent."""
    async with start_simulator() as simulator:
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            env = service_env(pg_url, simulator.url, API_PORT=str(port), SCHEDULER_INTERVAL="100ms")
            assert run_cli(["migrate"], env, tmp_path).returncode == 0
            await insert_pending(pg_url, 5)
            result = await asyncio.to_thread(run_cli, ["serve"], env, tmp_path)
        assert result.returncode == 3
        assert one_line(result.stdout + result.stderr) == (
            f"sms-dispatch: cannot listen on 127.0.0.1:{port} (API_HOST, API_PORT): address already in use"
        )
        assert simulator.requests == []
    assert await status_counts(pg_url) == {"PENDING": 5}


def test_provider_sim_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    """`provider-sim` on a taken port: one line naming it, exit 3."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli(["provider-sim", "--port", str(port)], clean_env({}), tmp_path)
    assert result.returncode == 3
    assert one_line(result.stdout + result.stderr) == (
        f"sms-dispatch: cannot listen on 127.0.0.1:{port} (--host, --port): address already in use"
    )


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    """`migrate` against nothing listening: where and why in one line, exit 3, no password."""
    port = free_port()
    env = clean_env({"DATABASE_URL": f"postgresql://app:hunter2-secret@127.0.0.1:{port}/sms"})
    result = run_cli(["migrate"], env, tmp_path)
    assert result.returncode == 3
    line = one_line(result.stdout + result.stderr)
    assert line.startswith(f"sms-dispatch: cannot use the database postgresql://app@127.0.0.1:{port}/sms")
    assert "connection refused" in line and "hunter2" not in line


def test_the_go_env_without_a_provider_url_refuses_to_send(tmp_path: Path) -> None:
    """The Go service's .env (APP_ENV=development, a real database) without SMS_PROVIDER_URL: exit 2
    naming the variable, before the database is even tried (it does not exist here)."""
    go_env = {"APP_ENV": "development", "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port())}
    for command in (["serve"], ["worker"], ["dispatch", "--once"]):
        result = run_cli(command, clean_env(go_env), tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert one_line(result.stderr).startswith(
            "sms-dispatch: configuration error: SMS_PROVIDER_URL is not set"
        )


def test_the_simulator_is_refused_in_production(tmp_path: Path) -> None:
    """SMS_PROVIDER_URL=simulator with APP_ENV=production stops `worker` at once."""
    env = clean_env({"APP_ENV": "production", "SMS_PROVIDER_URL": "simulator", "SQLITE_PATH": "x.db"})
    result = run_cli(["worker"], env, tmp_path)
    assert result.returncode == 2
    assert "SMS_PROVIDER_URL=simulator is refused with APP_ENV=production" in one_line(result.stderr)
    assert not (tmp_path / "x.db").exists()


@pytest.mark.postgres
async def test_migrate_waits_for_older_instances_unless_allowed(pg_url: str, tmp_path: Path) -> None:
    """An older instance with a fresh heartbeat: `migrate` refuses naming it; the flag overrides."""
    await move_to(pg_url, "0009")
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO instances (name, host, pid, version, started_at, last_heartbeat_at)"
            " VALUES ('old-1', 'h', 1, '0.0.9', now(), now())"
        )
    finally:
        await conn.close()
    env = clean_env({"DATABASE_URL": pg_url})
    refused = run_cli(["migrate"], env, tmp_path)
    assert refused.returncode == 3
    assert "old-1 (0.0.9)" in one_line(refused.stderr)
    allowed = run_cli(["migrate", "--allow-older-instances"], env, tmp_path)
    assert (allowed.returncode, allowed.stdout.strip()) == (
        0,
        f"database schema upgraded from 0009 to {HEAD}",
    )


def test_serve_without_migrate_on_start_refuses_a_fresh_database(tmp_path: Path) -> None:
    """MIGRATE_ON_START=false: `serve` checks like the other commands and creates nothing."""
    env = clean_env({"MIGRATE_ON_START": "false", "API_PORT": str(free_port())})
    result = run_cli(["serve"], env, tmp_path)
    assert result.returncode == 3
    assert "run `sms-dispatch migrate`" in one_line(result.stderr)
    assert not (tmp_path / "sms-dispatch.db").exists()
