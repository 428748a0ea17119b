"""The machine facts every results file starts with (cores, CPU, core speed, versions, load),
and writing a results file under ``bench/results/``."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import asyncpg
import psutil
import redis.asyncio as aioredis
from harness import PG_ADMIN_URL, RESULTS, redis_url

CALIBRATION_LOOPS = 10_000_000


@functools.cache
def cpu_calibration_s() -> float:
    """Return the best of 3 timings of one fixed pure-Python loop on this machine, in seconds.

    Figures from different sittings compare only as far as the machines do; this one number
    says how fast a core ran Python here (VMs of one model name differed by 3x between sittings).
    """
    best_s = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_LOOPS):
            total += i
        best_s = min(best_s, time.perf_counter() - started)
    return best_s


THROUGHPUT_LIBRARIES = (
    "sqlalchemy",
    "asyncpg",
    "aiohttp",
    "pyreqwest",
    "redis",
    "uvloop",
    "pgqueuer",
    "procrastinate",
    "psycopg",
)


def machine_facts(software: str) -> list[str]:
    """Describe the date, the machine, its core speed, ``software`` (versions) and the load."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "unknown",
    )
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores, {model}, {platform.system()} {platform.release()},"
        f" {psutil.virtual_memory().total / 2**30:.0f} GiB",
        f"- core speed: {cpu_calibration_s():.2f} s for a pure-Python loop of"
        f" {CALIBRATION_LOOPS:,} additions, best of 3 (lower is faster; compare sittings by it)",
        f"- Python {platform.python_version()}; {software}",
        f"- load average when done: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        " (other work may share this machine: ratios measured side by side hold better than rates)",
    ]


def library_versions(names: Sequence[str]) -> str:
    """Return ``name version`` for each installed library of ``names``."""
    versions = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    return ", ".join(versions)


async def machine() -> list[str]:
    """Describe the machine, the servers and the libraries of the throughput benchmarks."""
    return machine_facts(f"{await server_versions()}; {library_versions(THROUGHPUT_LIBRARIES)}")


async def server_versions() -> str:
    """Return the PostgreSQL and Redis server versions."""
    connection = await asyncpg.connect(PG_ADMIN_URL)
    try:
        pg = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    client = aioredis.from_url(redis_url())
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return f"PostgreSQL {pg.split()[0]}, Redis {info['redis_version']}"


async def write_results(name: str, title: str, body: list[str], command: str) -> Path:
    """Write ``bench/results/<name>.md`` with the machine facts and the command."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    text = [f"# {title}", "", *await machine(), f"- command: `{command}`", "", *body, ""]
    path.write_text("\n".join(text))
    return path
