"""Throughput of sms-dispatch's continuous mode against its peers, a ceiling and the Go algorithm.

    .venv/bin/python bench/throughput.py [--quick] [--messages 100000] [--memory] [--repeat 1]

Stages, in one sitting (each on a fresh database, a fresh Redis db, the simulator in its own
process, the contender in its own process):

- drain: ``--messages`` PENDING rows, simulator at 0 ms: the real ``sms-dispatch worker`` in
  continuous mode (batch 1,000, 64 in flight), the raw ``ceiling`` loop, the Go service's
  algorithm (``go-loop``), PgQueuer and procrastinate (``peers.py``). The ceiling and the
  go-loop call the provider with aiohttp, as the issue defines them; ``ceiling-pyreqwest`` and
  ``go-loop-pyreqwest`` are the same loops on pyreqwest, the service's own default client, so
  the service's share of the ceiling and its lead over the Go algorithm are also shown with the
  HTTP client held equal. Both ceilings drain ``--messages``, like the service; the other
  contenders drain ``--peer-messages``;
- cores: the same drain with ``sms-dispatch worker --processes 2``;
- latency-bound: simulator answering in 200 ms, 1,000 in flight, against 5,000/s: one process
  with ``MESSAGE_MAX_WORKERS=1000`` claiming 1,000 rows at once and 500, and 2 processes of 500
  (``latency_bound.LATENCY_SETUPS``), interleaved, each with its own verdict; and the first of them against a
  simulator whose answers take 200 ms give or take up to 20 (uniformly, so the bound is the
  same). With a fixed delay the 1,000 answers come back in waves that one event loop works
  through one at a time; the varying delay tells whether those waves are what holds one
  process back, as a real provider's varying time would spread them;
- memory (``--memory``, on by default in ``run_all.py``): peak RSS while draining 1,000,000.

Every run checks itself before it counts: each row SUCCESS with a distinct provider id, the
provider saw exactly one POST per message, and every Redis key is there. Results are printed
and written to ``bench/results/throughput.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import subprocess
import sys
import time
from pathlib import Path

from contender import Contender, service_env
from harness import (
    BENCH,
    PYTHON,
    RESULTS,
    SMS_DISPATCH,
    Run,
    Simulator,
    check_exactly_once,
    flush_redis,
    fresh_database,
    median_run,
    redis_url,
    set_switch,
    simulator,
    stop_cleanly_on_sigterm,
    verdict,
    wait_drained,
)
from latency_bound import LatencySetup, latency_section, run_latency
from machine import write_results
from readings import postgres_cpu, postgres_cpu_s, tree_cpu_s, tree_peak_rss_mb

SERVICE = "sms-dispatch"
PEERS = ("ceiling", "ceiling-pyreqwest", "go-loop", "go-loop-pyreqwest", "pgqueuer", "procrastinate")
CEILINGS = ("ceiling", "ceiling-pyreqwest")
"""The raw loops: the service is shown as a share of each, and they drain as many as it does."""
GO_LOOPS = ("go-loop", "go-loop-pyreqwest")


async def drain(
    name: str,
    sim: Simulator,
    messages: int,
    *,
    workers: int = 64,
    batch: int = 1000,
    processes: int = 1,
    timeout_s: float = 900,
) -> Run:
    """Drain ``messages`` rows with one contender and check the result."""
    async with fresh_database(messages) as url:
        await flush_redis()
        await sim.clear()
        if name == SERVICE:
            await set_switch(url, running=False)
            args = [SMS_DISPATCH, "worker", *(["--processes", str(processes)] if processes > 1 else [])]
            env = service_env(url, sim, workers=workers, batch=batch)
            contender = Contender(args, env, ready="continuous mode", ready_count=processes)
        else:
            args = [PYTHON, str(BENCH / "peers.py"), name, "--db", url, "--sim", sim.url]
            args += ["--redis", redis_url(), "--workers", str(workers), "--batch", str(batch)]
            contender = Contender(args, {}, ready="ready")
        try:
            await contender.wait_ready(timeout_s=300)
            cpu0, db0, sim0 = tree_cpu_s(contender.proc.pid), postgres_cpu(), tree_cpu_s(sim.pid)
            started = time.monotonic()
            profiler = start_profiler(contender.proc.pid, name) if PROFILE and name == SERVICE else None
            if name == SERVICE:
                await set_switch(url, running=True)
            else:
                contender.go()
            finished = await wait_drained(url, timeout_s=timeout_s)
            cpu1, db1, sim1 = tree_cpu_s(contender.proc.pid), postgres_cpu(), tree_cpu_s(sim.pid)
            peak_mb = tree_peak_rss_mb(contender.proc.pid)
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=30)
            if name != SERVICE:
                contender.go()  # figures read: let it close its connections and exit
                await contender.wait_exit()
        except BaseException:
            print(contender.output(), file=sys.stderr)
            raise
        finally:
            code = contender.stop()
        label = f"{name} ×{processes}" if processes > 1 else name
        db_s = postgres_cpu_s(db0, db1)
        run = Run(label, messages, finished - started, cpu1 - cpu0, db_s, sim1 - sim0, peak_mb)
        run.problems = await check_exactly_once(url, sim, messages)
        if code not in (0, None) and name == SERVICE:
            run.problems.append(f"exit code {code} after SIGTERM")
    status = "ok" if run.ok else "WRONG: " + "; ".join(run.problems)
    print(
        f"  {run.name:18} {run.rate:9,.0f} msg/s  {run.cpu_per_1000:6.3f} CPU-s/1k"
        f"  db {run.db_cpu_s / messages * 1000:5.3f}  sim {run.sim_cpu_s / messages * 1000:5.3f}"
        f"  peak RSS {run.peak_rss_mb:5.0f} MB  ({messages:,} msgs, {run.elapsed_s:.1f} s)  {status}",
        flush=True,
    )
    return run


PROFILE = False
"""Set by --profile: sample the service with py-spy during its drains."""


def start_profiler(pid: int, name: str) -> subprocess.Popen[bytes]:
    """Sample process ``pid`` with py-spy into ``bench/results/profile-<name>.txt`` (raw stacks)."""
    out = RESULTS / f"profile-{name}.txt"
    command = [str(Path(PYTHON).parent / "py-spy"), "record", "-p", str(pid), "-r", "200", "--gil"]
    return subprocess.Popen(
        [*command, "-f", "raw", "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL
    )


def table(runs: dict[str, Run], service: Run | None) -> list[str]:
    """Render the drain table (without the service, its comparison column stays empty)."""
    lines = [
        "| contender | messages/s | CPU-s per 1,000 (contender) | PostgreSQL CPU-s per 1,000"
        " | sms-dispatch is | peak RSS | exactly once |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        if service is None or run is service:
            versus = "—"
        elif name in CEILINGS:
            versus = f"{service.rate / run.rate:.0%} of it"
        else:
            versus = f"{service.rate / run.rate:.2f}x faster"
        lines.append(
            f"| {name} | {run.rate:,.0f} | {run.cpu_per_1000:.3f} | {run.db_cpu_s / run.messages * 1000:.3f}"
            f" | {versus} | {run.peak_rss_mb:.0f} MB | {'yes' if run.ok else 'NO: ' + '; '.join(run.problems)} |"
        )
    return lines


async def main_async(args: argparse.Namespace) -> int:
    """Run every stage, print and write the results."""
    messages = args.messages or (2_000 if args.quick else 100_000)
    peer_messages = args.peer_messages or messages
    names = [SERVICE, *PEERS] if not args.only else [n for n in args.only.split(",") if n != "none"]
    collected: dict[str, list[Run]] = {}
    body: list[str] = []
    with simulator() as sim:
        if names:
            print(f"drain: {messages:,} messages, simulator at 0 ms", flush=True)
        for _ in range(args.repeat):  # whole rounds, so load from elsewhere hits every contender alike
            for name in names:
                count = messages if name in (SERVICE, *CEILINGS) else peer_messages
                collected.setdefault(name, []).append(await drain(name, sim, count))
        runs = {name: median_run(each) for name, each in collected.items()}
        cores: list[Run] = []
        if SERVICE in runs and not args.skip_cores:
            print("cores: sms-dispatch worker --processes 2", flush=True)
            cores = [await drain(SERVICE, sim, messages, processes=2) for _ in range(args.repeat)]
    latency: dict[LatencySetup, list[Run]] = {}
    if not args.skip_latency:
        count = args.latency_messages or (5_000 if args.quick else 50_000)
        latency = await run_latency(functools.partial(drain, SERVICE), count=count, repeat=args.repeat)
    memory: Run | None = None
    if args.memory:
        with simulator() as sim:
            count = 20_000 if args.quick else 1_000_000
            print(f"memory: {count:,} messages", flush=True)
            memory = await drain(SERVICE, sim, count, timeout_s=3600)

    all_runs = (
        [r for each in collected.values() for r in each]
        + cores
        + [r for each in latency.values() for r in each]
        + ([memory] if memory else [])
    )
    wrong = [r for r in all_runs if not r.ok]
    verdicts: list[str] = []
    if runs:
        body += [f"## Drain: {messages:,} pending messages, simulator at 0 ms", ""]
        body += table(runs, runs.get(SERVICE))
    if SERVICE in runs:
        service = runs[SERVICE]
        peers = [r for n, r in runs.items() if n not in (SERVICE, *CEILINGS, *GO_LOOPS)]
        verdicts.append(verdict("drain ≥ 10,000 msg/s", service.rate >= 10_000, f"{service.rate:,.0f} msg/s"))
        ceiling_targets = {
            "ceiling": "drain ≥ 80% of the ceiling (aiohttp, as the issue defines it)",
            "ceiling-pyreqwest": "drain ≥ 80% of the ceiling on the service's own client (pyreqwest)",
        }
        for name, target in ceiling_targets.items():
            if name in runs:
                share = service.rate / runs[name].rate
                verdicts.append(verdict(target, share >= 0.8, f"{share:.0%}"))
        for run in [*peers, *(runs[name] for name in GO_LOOPS if name in runs)]:
            ratio = service.rate / run.rate
            verdicts.append(verdict(f"drain ≥ 3x {run.name}", ratio >= 3, f"{ratio:.1f}x"))
        if cores:
            two = median_run(cores)
            ratio = two.rate / service.rate
            body += ["", "## Cores: the same drain with 2 dispatcher processes", ""]
            body += [
                "| processes | messages/s | CPU-s per 1,000 | ratio |",
                "|---|---|---|---|",
                f"| 1 | {service.rate:,.0f} | {service.cpu_per_1000:.3f} | 1.00x |",
                f"| 2 | {two.rate:,.0f} | {two.cpu_per_1000:.3f} | {ratio:.2f}x |",
            ]
            verdicts.append(verdict("2 processes ≥ 1.5x one", ratio >= 1.5, f"{ratio:.2f}x"))
    if latency:
        zero_ms = {1: runs.get(SERVICE), 2: median_run(cores) if cores else None}
        lines, found = latency_section(latency, zero_ms)
        body += lines
        verdicts += found
    if memory:
        body += ["", f"## Memory: draining {memory.messages:,} messages", ""]
        body += [
            "| messages | messages/s | peak RSS (VmHWM) |",
            "|---|---|---|",
            f"| {memory.messages:,} | {memory.rate:,.0f} | {memory.peak_rss_mb:.0f} MB |",
        ]
        verdicts.append(
            verdict("peak RSS < 150 MB", memory.peak_rss_mb < 150, f"{memory.peak_rss_mb:.0f} MB")
        )
    body += [
        "",
        "## Targets",
        "",
        *verdicts,
        "",
        f"Median of {args.repeat} interleaved round(s). CPU-s per 1,000 is the contender's own CPU time"
        " (all its processes); PostgreSQL's is every server process's. Every run was checked: each row"
        " SUCCESS with a distinct provider id, one POST per message at the provider, every Redis key set.",
    ]
    print("\n" + "\n".join(body))
    command = " ".join(["bench/throughput.py", *sys.argv[1:]])
    path = await write_results(args.output, "Throughput: continuous mode against its peers", body, command)
    print(f"\nwritten to {path}")
    if wrong:
        print(f"FAILED: {len(wrong)} run(s) did not deliver exactly once", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (2,000 messages)")
    parser.add_argument("--messages", type=int, help="messages per drain (default 100,000)")
    parser.add_argument("--peer-messages", type=int, help="messages per peer drain (default: --messages)")
    parser.add_argument("--latency-messages", type=int, help="messages in the latency-bound run")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the median counts")
    parser.add_argument("--memory", action="store_true", help="also drain 1,000,000 and report peak RSS")
    parser.add_argument("--only", help="comma-separated contenders (default: all; none: no drain)")
    parser.add_argument("--skip-cores", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--output", default="throughput", help="results file name under bench/results/")
    parser.add_argument("--profile", action="store_true", help="py-spy the service's drains into results/")
    stop_cleanly_on_sigterm()
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    started = time.monotonic()
    code = asyncio.run(main_async(args))
    print(f"({time.monotonic() - started:.0f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
