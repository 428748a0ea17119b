"""The provider simulator as its own process, for the benchmarks, with a delivery ledger.

    python bench/simserver.py [--latency-ms 0] [--port 0]

Prints ``provider simulator listening on <url>`` once ready. Besides the simulator's own
routes it counts every POST it answers and remembers the idempotency keys it saw, so a run
can check that each message reached the provider exactly once: ``GET /_bench/ledger`` gives
``{"posts", "distinct_keys", "max_per_key"}`` and ``DELETE /_bench/ledger`` empties it.
Keys are held as 128-bit integers (a UUID's value), not strings, to keep the ledger small.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import uvloop
from aiohttp import web

from sms_dispatch.simulator import SimulatorConfig, create_simulator_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LEDGER = web.AppKey("bench_ledger", Counter)


@web.middleware
async def count_posts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each answered provider POST under its idempotency key (or the ``to`` field)."""
    response = await handler(request)
    if request.method == "POST" and response.status == 202:
        key = request.headers.get("Idempotency-Key")
        ledger: Counter[int] = request.app[LEDGER]
        ledger[_key(key)] += 1
    return response


def _key(raw: str | None) -> int:
    try:
        return uuid.UUID(raw or "").int
    except ValueError:
        return hash(raw)


async def ledger(request: web.Request) -> web.Response:
    """Return the ledger's totals."""
    counts: Counter[int] = request.app[LEDGER]
    body = {
        "posts": sum(counts.values()),
        "distinct_keys": len(counts),
        "max_per_key": max(counts.values(), default=0),
    }
    return web.json_response(body)


async def clear(request: web.Request) -> web.Response:
    """Empty the ledger."""
    request.app[LEDGER].clear()
    return web.json_response({"cleared": True})


async def serve(latency_ms: float, port: int) -> None:
    """Serve the simulator with the ledger until killed."""
    app = create_simulator_app(SimulatorConfig(latency_ms=latency_ms, record_limit=1))
    app[LEDGER] = Counter()
    app.middlewares.append(count_posts)
    app.router.add_get("/_bench/ledger", ledger)
    app.router.add_delete("/_bench/ledger", clear)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    host, bound = runner.addresses[0][:2]
    print(f"provider simulator listening on http://{host}:{bound}/", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.latency_ms, args.port))


if __name__ == "__main__":
    main()
