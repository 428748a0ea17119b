"""The service's own aiohttp simulator with the bench ledger (``simserver.py --framework``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

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
