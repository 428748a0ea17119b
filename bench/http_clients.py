"""Measure the provider call with pyreqwest, aiohttp and httpx, side by side.

The lean provider simulator (``simserver.py``) runs in a separate process, so this process's CPU is
the client's alone; the simulator's load is reported beside it. For each client, event
loop and concurrency, it POSTs the same provider request (``{"to", "content"}`` with the
auth and idempotency headers) and counts requests per second; every answer must be a 202.

    .venv/bin/python bench/http_clients.py [--requests N] [--concurrency 8,32,128] [--repeat 3]

Results are printed and written to ``bench/results/http_clients.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvloop
from machine import library_versions, machine_facts

from sms_dispatch.bootstrap import open_provider
from sms_dispatch.config import Settings
from sms_dispatch.domain import Message, Outcome, Status

RESULTS = Path(__file__).parent / "results" / "http_clients.md"
AUTH_KEY = "bench-auth-key"
SIMSERVER = Path(__file__).parent / "simserver.py"

Send = Callable[[Message], Awaitable[bool]]


@dataclass(frozen=True)
class Cell:
    """One measurement: requests completed, seconds taken, CPU seconds of each side, failures."""

    completed: int
    elapsed_s: float
    cpu_s: float
    failures: int
    server_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.completed / self.elapsed_s

    @property
    def cpu_us(self) -> float:
        """Client CPU microseconds per request."""
        return self.cpu_s / self.completed * 1e6

    @property
    def server_load(self) -> float:
        """Share of one core the simulator used while the cell ran."""
        return self.server_cpu_s / self.elapsed_s


def process_cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_message() -> Message:
    """Build the message every request carries."""
    now = datetime.now(UTC)
    return Message(
        id=uuid.uuid4(),
        to="+905551111111",
        content="Insider - Project",
        status=Status.SENDING,
        attempts=1,
        created_at=now,
        updated_at=now,
    )


async def drive(send: Send, *, requests: int, concurrency: int, max_s: float) -> Cell:
    """Send up to ``requests`` with ``concurrency`` in flight, stopping after ``max_s``."""
    message = make_message()
    counter = itertools.count()
    failures = completed = 0
    deadline = time.perf_counter() + max_s

    async def worker() -> None:
        nonlocal failures, completed
        while next(counter) < requests and time.perf_counter() < deadline:
            if not await send(message):
                failures += 1
            completed += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Cell(completed, time.perf_counter() - t0, time.process_time() - cpu0, failures)


async def with_service_client(
    client: str, url: str, concurrency: int, run: Callable[[Send], Awaitable[Cell]]
) -> Cell:
    """Measure the provider adapter the service wires for ``PROVIDER_HTTP_CLIENT=client``."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        PROVIDER_HTTP_CLIENT=client,
        MESSAGE_MAX_WORKERS=concurrency,
        SMS_PROVIDER_KEY=AUTH_KEY,
    )
    async with contextlib.AsyncExitStack() as stack:
        provider = open_provider(settings, url, stack)

        async def send(message: Message) -> bool:
            result = await provider.send(message, timeout_s=10.0)
            return result.outcome is Outcome.DELIVERED and result.http_status == 202

        return await run(send)


async def with_httpx(url: str, concurrency: int, run: Callable[[Send], Awaitable[Cell]]) -> Cell:
    """Measure httpx.AsyncClient doing the same request and the same checks."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def send(message: Message) -> bool:
            response = await client.post(
                url,
                content=json.dumps({"to": message.to, "content": message.content}),
                headers={
                    "Content-Type": "application/json",
                    "x-ins-auth-key": AUTH_KEY,
                    "Idempotency-Key": str(message.id),
                },
            )
            return response.status_code == 202 and bool(response.json().get("messageId"))

        return await run(send)


CLIENTS = {
    "pyreqwest": functools.partial(with_service_client, "pyreqwest"),
    "aiohttp": functools.partial(with_service_client, "aiohttp"),
    "httpx": with_httpx,
}
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def measure(
    client: str, loop: str, server: int, url: str, args: argparse.Namespace, concurrency: int
) -> Cell:
    """Warm up (one wave), then measure one cell on a fresh event loop."""

    async def main() -> Cell:
        async def run(send: Send) -> Cell:
            await drive(send, requests=concurrency, concurrency=concurrency, max_s=args.max_s)
            before = process_cpu_s(server)
            cell = await drive(send, requests=args.requests, concurrency=concurrency, max_s=args.max_s)
            return dataclasses.replace(cell, server_cpu_s=process_cpu_s(server) - before)

        return await CLIENTS[client](url, concurrency, run)

    return run_on(loop, main())


def run_on(loop: str, coroutine: Coroutine[Any, Any, Cell]) -> Cell:
    """Run ``coroutine`` on a new loop of the named kind."""
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coroutine)


def start_server() -> tuple[subprocess.Popen[str], str]:
    """Start the simulator in its own process; return it and its URL."""
    # The lean benchmark simulator (httptools): the service's aiohttp one saturates its core
    # first, and a client's cost per request is only visible while the server keeps up.
    command = [sys.executable, str(SIMSERVER), "--auth-key", AUTH_KEY]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening on" not in line:
        server.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return server, line.rsplit(" ", 1)[1].strip()


def main() -> int:
    """Run every cell, print the table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per cell")
    parser.add_argument("--concurrency", default="8,32,128,1000", help="comma-separated levels")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median counts")
    parser.add_argument("--max-s", type=float, default=4.0, help="time cap per cell, seconds")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    columns = [(client, loop) for client in CLIENTS for loop in LOOPS]

    server, url = start_server()
    try:
        cells: dict[tuple[str, str, int], list[Cell]] = {}
        # Whole rounds, not repeats of one cell in a row: a burst of load from elsewhere
        # on a shared machine then hits every column alike.
        for _, level, (client, loop) in itertools.product(range(args.repeat), levels, columns):
            cell = measure(client, loop, server.pid, url, args, level)
            cells.setdefault((client, loop, level), []).append(cell)
            print(
                f"  {client:9} {loop:8} c={level:<4} {cell.rate:9,.0f} req/s"
                f" {cell.cpu_us:7.0f} µs CPU/req, simulator at {cell.server_load:4.0%}"
                f" of a core ({cell.completed} requests)",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=10)

    failures = sum(cell.failures for runs in cells.values() for cell in runs)
    if failures:
        print(f"FAILED: {failures} requests did not get a 202", file=sys.stderr)
        return 1

    def median(client: str, loop: str, level: int, key: Callable[[Cell], float]) -> float:
        return statistics.median(key(cell) for cell in cells[(client, loop, level)])

    def rate(cell: Cell) -> float:
        return cell.rate

    header = "| client | " + " | ".join(f"c={level}" for level in levels) + " |"
    lines = [header, "|---|" + "---|" * len(levels)]
    for client, loop in columns:
        figures = [
            f"{median(client, loop, lv, rate):,.0f} req/s"
            f" ({median(client, loop, lv, lambda c: c.cpu_us):,.0f} µs CPU,"
            f" sim {median(client, loop, lv, lambda c: c.server_load):.0%})"
            for lv in levels
        ]
        lines.append(f"| {client} on {loop} | " + " | ".join(figures) + " |")

    def cpu_us(cell: Cell) -> float:
        return cell.cpu_us

    def ratios(fast: str, slow: str, loop: str, digits: int) -> str:
        return ", ".join(
            f"{median(fast, loop, lv, rate) / median(slow, loop, lv, rate):.{digits}f}x at c={lv}"
            for lv in levels
        )

    def cpu_shares(one: str, other: str, loop: str) -> str:
        return ", ".join(
            f"{median(one, loop, lv, cpu_us) / median(other, loop, lv, cpu_us):.0%} at c={lv}"
            for lv in levels
        )

    lines += [
        "",
        f"pyreqwest over aiohttp, both on uvloop: {ratios('pyreqwest', 'aiohttp', 'uvloop', 2)};"
        " pyreqwest's CPU per request as a share of aiohttp's:"
        f" {cpu_shares('pyreqwest', 'aiohttp', 'uvloop')}.",
        "",
        f"aiohttp over httpx, both on plain asyncio: {ratios('aiohttp', 'httpx', 'asyncio', 0)}.",
    ]
    print("\n" + "\n".join(lines))

    command = " ".join(["bench/http_clients.py", *sys.argv[1:]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    notes = [
        f"- command: `.venv/bin/python {command}`",
        f"- up to {args.requests} requests per cell (capped at {args.max_s:g} s) after one warm-up"
        f" wave; median of {args.repeat} interleaved round(s); every answer checked to be a 202",
        "- the simulator (the lean `bench/simserver.py`, httptools) runs in its own process; µs CPU is the client"
        " process's CPU time per request, sim is the simulator process's load (share of its core)"
        " during the cell",
        "- pyreqwest (the service's default client) and aiohttp (`PROVIDER_HTTP_CLIENT=aiohttp`) are"
        " measured through the adapter the service wires (`bootstrap.open_provider`), each pooled to"
        " the concurrency (`MESSAGE_MAX_WORKERS`); httpx"
        " with one `AsyncClient` sized to the concurrency; same request and checks for all three",
    ]
    title = "# HTTP client for the provider call: pyreqwest vs aiohttp vs httpx"
    args.output.write_text(
        "\n".join(
            [
                title,
                "",
                *machine_facts(library_versions(("pyreqwest", "aiohttp", "httpx", "httpcore", "uvloop"))),
                *notes,
                "",
                *lines,
            ]
        )
        + "\n"
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
