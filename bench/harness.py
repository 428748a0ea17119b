"""What every throughput benchmark shares: a fresh database, the simulator process, the
benchmarks' Redis and the exactly-once check. The contender processes are in ``contender.py``,
the CPU and memory readings in ``readings.py``, the machine facts and results files in
``machine.py``.

Every contender runs in its own process, as does the provider simulator (``simserver.py``), so
a contender's CPU time is its own; PostgreSQL's and the simulator's are reported beside it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from sqlalchemy import make_url

from sms_dispatch.adapters.database import create_engine, migrate

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"
PYTHON = sys.executable
SMS_DISPATCH = str(Path(sys.executable).parent / "sms-dispatch")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_private_redis: list[subprocess.Popen[bytes]] = []


def redis_url() -> str:
    """Return the benchmarks' Redis: ``BENCH_REDIS_URL``, else a private ``redis-server`` started
    on a free port for this run (so no one else's Redis database is ever flushed)."""
    configured = os.environ.get("BENCH_REDIS_URL")
    if configured:
        return configured
    if not _private_redis:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        _private_redis.append(server)
        atexit.register(server.terminate)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.connect(("127.0.0.1", port))
                break
            time.sleep(0.05)
        os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"  # children use the same one
    return os.environ["BENCH_REDIS_URL"]


AUTH_KEY = "bench-auth-key"


@dataclass
class Run:
    """One measured drain: how many messages, how long, what it cost, whether it was right."""

    name: str
    messages: int
    elapsed_s: float
    cpu_s: float
    db_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.elapsed_s

    @property
    def cpu_per_1000(self) -> float:
        """The contender's CPU seconds per 1,000 messages."""
        return self.cpu_s / self.messages * 1000

    @property
    def ok(self) -> bool:
        """True when the exactly-once check found nothing wrong."""
        return not self.problems


def median_run(runs: Sequence[Run]) -> Run:
    """Return the run with the median rate (all runs must have passed their check)."""
    ordered = sorted(runs, key=lambda r: r.rate)
    chosen = ordered[len(ordered) // 2]
    chosen.problems = [p for r in runs for p in r.problems]
    return chosen


def verdict(target: str, met: bool, figure: str) -> str:
    """One line of a results file's targets: ``- met: ...`` or ``- NOT met: ...`` (``run_all`` reads them)."""
    return f"- {'met' if met else 'NOT met'}: {target} ({figure})"


class Simulator:
    """The provider simulator in its own process, with its delivery ledger."""

    def __init__(self, latency_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        options = ["--latency-ms", str(latency_ms), "--jitter-ms", str(jitter_ms), "--auth-key", AUTH_KEY]
        self._proc = subprocess.Popen(
            [PYTHON, str(BENCH / "simserver.py"), *options],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if "listening on" not in line:
            self._proc.kill()
            raise SystemExit(f"the simulator did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()
        self.pid = self._proc.pid

    async def ledger(self) -> dict[str, int]:
        """Return ``{"posts", "distinct_keys", "max_per_key"}`` since the last clear."""
        async with aiohttp.ClientSession() as http, http.get(self.url + "_bench/ledger") as answer:
            ledger: dict[str, int] = await answer.json()
        return ledger

    async def clear(self) -> None:
        """Empty the ledger."""
        async with aiohttp.ClientSession() as http, http.delete(self.url + "_bench/ledger"):
            pass

    def close(self) -> None:
        """Stop the process."""
        self._proc.terminate()
        self._proc.wait(timeout=10)


@contextlib.contextmanager
def simulator(latency_ms: float = 0.0, jitter_ms: float = 0.0) -> Iterator[Simulator]:
    """Run the simulator for the block."""
    sim = Simulator(latency_ms, jitter_ms)
    try:
        yield sim
    finally:
        sim.close()


@contextlib.asynccontextmanager
async def fresh_database(messages: int) -> AsyncIterator[str]:
    """Create a database at the service's schema holding ``messages`` PENDING rows; yield its URL."""
    name = f"smsd_tput_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = create_engine(make_url(url).set(drivername="postgresql+asyncpg"), pool_size=1)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        await seed(url, messages)
        yield url
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def seed(url: str, messages: int) -> None:
    """Insert ``messages`` valid PENDING rows (distinct Turkish mobile numbers), then ANALYZE.

    The rows are stored as the service's API stores them: already checked (``validated``), so
    the dispatcher does not check them again; the peers do no checking at all."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            'INSERT INTO messages ("to", content, next_attempt_at, created_at, updated_at, validated)'
            " SELECT '+90555' || lpad(g::text, 7, '0'), 'Insider - Project',"
            " now() - interval '1 hour' + g * interval '1 microsecond', now(), now(), true"
            " FROM generate_series(1, $1) AS g",
            messages,
        )
        await connection.execute("VACUUM ANALYZE messages")
    finally:
        await connection.close()


async def set_switch(url: str, *, running: bool) -> None:
    """Turn the fleet-wide switch on or off and wake every listening dispatcher."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("UPDATE scheduler_state SET running = $1", running)
        await connection.execute("NOTIFY sms_dispatch_new")
    finally:
        await connection.close()


async def wait_drained(url: str, *, timeout_s: float, poll_s: float = 0.02) -> float:
    """Wait until no row is PENDING or SENDING (two partial-index probes); return the time.

    Rides out a lost connection (the machine's PostgreSQL may be restarted by other work).
    """
    query = (
        "SELECT EXISTS (SELECT 1 FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL)"
        " OR EXISTS (SELECT 1 FROM messages WHERE status = 'SENDING')"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = await asyncpg.connect(url)
            try:
                while await connection.fetchval(query):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(poll_s)
                else:
                    return time.monotonic()
            finally:
                with contextlib.suppress(Exception):
                    await connection.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
            print(f"  (database connection lost: {exc}; retrying)", file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
    raise TimeoutError(f"not drained after {timeout_s:g} s")


async def flush_redis() -> None:
    """Empty the benchmark's Redis database."""
    client = aioredis.from_url(redis_url())
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def check_exactly_once(url: str, sim: Simulator, messages: int) -> list[str]:
    """Return what is wrong: every row SUCCESS once, every POST distinct, every key cached."""
    problems = []
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'SUCCESS') AS sent,"
            " count(DISTINCT message_id) AS provider_ids, count(*) AS total FROM messages"
        )
    finally:
        await connection.close()
    if row["sent"] != messages or row["total"] != messages:
        problems.append(f"{row['sent']} of {row['total']} rows SUCCESS, expected {messages}")
    if row["provider_ids"] != messages:
        problems.append(f"{row['provider_ids']} distinct provider ids recorded, expected {messages}")
    ledger = await sim.ledger()
    if ledger["posts"] != messages or ledger["distinct_keys"] != messages or ledger["max_per_key"] != 1:
        problems.append(f"provider saw {ledger}, expected {messages} POSTs, one per message")
    client = aioredis.from_url(redis_url())
    try:
        deadline = time.monotonic() + 10
        while (cached := await client.dbsize()) < messages and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    if cached != messages:
        problems.append(f"{cached} Redis keys, expected {messages}")
    return problems


def stop_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so a stopped benchmark still stops its processes
    and drops its databases (the ``finally`` blocks run)."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
