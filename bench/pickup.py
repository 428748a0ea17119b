"""Instant pickup: insert-to-provider latency under a trickle of inserts, and idle CPU.

    .venv/bin/python bench/pickup.py [--quick] [--rate 100] [--seconds 30] [--idle-s 10]

The real ``sms-dispatch worker`` runs in continuous mode on PostgreSQL (LISTEN/NOTIFY wake-up,
polling as the fallback) against the simulator in its own process. Another program inserts
``--rate`` rows a second with plain SQL, each its own transaction, for ``--seconds``. Each
row's latency is ``sent_at - created_at``: from the insert's transaction to the moment the
provider's answer was in (so it bounds insert-to-provider from above). Then the worker sits
idle and its CPU time is read from ``/proc/<pid>/stat`` over ``--idle-s`` seconds. Every row
must be sent exactly once. Results go to ``bench/results/pickup.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg
from contender import Contender, service_env
from harness import (
    SMS_DISPATCH,
    check_exactly_once,
    flush_redis,
    fresh_database,
    simulator,
    stop_cleanly_on_sigterm,
    wait_drained,
)
from machine import write_results

INSERT = """INSERT INTO messages ("to", content) VALUES ($1, 'Insider - Project')"""


def cpu_ticks(pid: int) -> int:
    """Return the clock ticks (user + system) process ``pid`` has used, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def trickle(url: str, rate: float, seconds: float) -> int:
    """Insert ``rate`` rows a second for ``seconds``, one transaction each; return how many."""
    connection = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        inserted = 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            while inserted < due:
                await connection.execute(INSERT, f"+90555{inserted:07d}")
                inserted += 1
            await asyncio.sleep(max(0.0, inserted / rate - (time.monotonic() - started)))
        return inserted
    finally:
        await connection.close()


async def latencies_ms(url: str) -> list[float]:
    """Return every row's ``sent_at - created_at`` in milliseconds."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT extract(epoch FROM sent_at - created_at) * 1000 AS ms FROM messages ORDER BY created_at"
        )
    finally:
        await connection.close()
    return [float(row["ms"]) for row in rows]


def percentile(values: list[float], share: float) -> float:
    """Return the ``share`` percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def main_async(args: argparse.Namespace) -> int:
    """Run the trickle and the idle reading; print and write the results."""
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    idle_s = args.idle_s or (3.0 if args.quick else 10.0)
    with simulator() as sim:
        async with fresh_database(0) as url:
            await flush_redis()
            await sim.clear()
            env = service_env(url, sim, workers=64, batch=1000)
            worker = Contender([SMS_DISPATCH, "worker"], env, ready="continuous mode")
            try:
                await worker.wait_ready()
                await asyncio.sleep(1.0)  # the listener connects and the pump goes idle
                print(f"pickup: {args.rate:g} inserts/s for {seconds:g} s", flush=True)
                inserted = await trickle(url, args.rate, seconds)
                await wait_drained(url, timeout_s=60)
                await asyncio.sleep(2.0)  # the last cache writes and log summary
                ticks0 = cpu_ticks(worker.proc.pid)
                await asyncio.sleep(idle_s)
                idle_ticks = cpu_ticks(worker.proc.pid) - ticks0
            finally:
                worker.stop()
            samples = await latencies_ms(url)
            problems = await check_exactly_once(url, sim, inserted)
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
    body = [
        f"## Pickup: {args.rate:g} inserts/s for {seconds:g} s ({inserted:,} rows), continuous mode on PostgreSQL",
        "",
        "| p50 | p90 | p99 | max | mean | exactly once |",
        "|---|---|---|---|---|---|",
        f"| {p50:.1f} ms | {percentile(samples, 0.9):.1f} ms | {p99:.1f} ms | {max(samples):.1f} ms"
        f" | {statistics.fmean(samples):.1f} ms | {'yes' if not problems else 'NO: ' + '; '.join(problems)} |",
        "",
        f"## Idle: the worker's CPU over {idle_s:g} s with nothing to send",
        "",
        f"{idle_ticks} clock ticks ({idle_ticks * tick_s * 1000:.0f} ms of CPU, {idle_ticks * tick_s / idle_s:.2%} of a core),"
        " read from /proc/<pid>/stat.",
        "",
        "## Targets",
        "",
        f"- {'met' if p50 < 50 else 'NOT met'}: pickup p50 < 50 ms ({p50:.1f} ms)",
        f"- {'met' if p99 < 250 else 'NOT met'}: pickup p99 < 250 ms ({p99:.1f} ms)",
        f"- {'met' if idle_ticks * tick_s / idle_s < 0.005 else 'NOT met'}: idle, no measurable CPU"
        f" ({idle_ticks} ticks in {idle_s:g} s)",
        "",
        "Latency is `sent_at - created_at` of each row: from the inserting transaction's start to the"
        " provider's answer being in, so it bounds insert-to-provider from above.",
    ]
    print("\n" + "\n".join(body))
    command = " ".join(["bench/pickup.py", *sys.argv[1:]])
    path = await write_results(args.output, "Pickup: insert-to-provider latency and idle CPU", body, command)
    print(f"\nwritten to {path}")
    return 1 if problems else 0


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (5 s)")
    parser.add_argument("--rate", type=float, default=100.0, help="inserts per second")
    parser.add_argument("--seconds", type=float, help="how long to insert (default 30)")
    parser.add_argument("--idle-s", type=float, help="how long to read idle CPU (default 10)")
    parser.add_argument("--output", default="pickup", help="results file name under bench/results/")
    stop_cleanly_on_sigterm()
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
