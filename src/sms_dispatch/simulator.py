"""A stand-in for the webhook SMS provider, with latency and fault knobs.

``POST`` on any path with ``{"to", "content"}`` answers like webhook.site:
``202 {"message": "Accepted", "messageId": "<uuid4>"}``. Control endpoints live under
``/_sim/``: ``GET|DELETE /_sim/requests``, ``GET|PUT /_sim/config``, ``GET /_sim/health``.

Faults are drawn with one random number per request, so each rate is exact on its own:
``hang_rate + reset_rate + error_rate + broken_body_rate`` must not exceed 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import socket
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from aiohttp import web

from sms_dispatch.simulator_config import SimulatorConfig as SimulatorConfig


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One POST the simulator received and how it answered (``status`` None: no answer)."""

    body: str
    content_type: str | None
    to: str | None
    content: str | None
    idempotency_key: str | None
    auth_key: str | None
    status: int | None
    provider_message_id: str | None
    received_at: datetime
    fate: str


class _State:
    """The simulator's mutable state: knobs, RNG, recorded requests, stop signal."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.requests: deque[ReceivedRequest] = deque()
        self.stopping = asyncio.Event()
        self.config = config

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    @config.setter
    def config(self, config: SimulatorConfig) -> None:
        self._config = config
        self.rng = random.Random(config.seed)
        self.requests = deque(self.requests, maxlen=config.record_limit)


_STATE = web.AppKey("sim_state", _State)


def _json(status: int, payload: object, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(payload), content_type="application/json", headers=headers
    )


def _parse_message(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """Return ``(to, content, fault)``; ``fault`` says what is wrong with the body, if anything."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None, None, "body is not valid JSON"
    if not isinstance(body, dict):
        return None, None, "body must be a JSON object"
    fields = {name: body.get(name) for name in ("to", "content")}
    faults = [f"{name} must be a string" for name, v in fields.items() if not isinstance(v, str)]
    to, content = (v if isinstance(v, str) else None for v in fields.values())
    return to, content, "; ".join(faults) or None


async def _provider(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    config = state.config
    received_at = datetime.now(UTC)
    raw = await request.read()
    if config.latency_ms:
        await asyncio.sleep(config.latency_ms / 1000)
    to, content, fault = _parse_message(raw)
    auth_key = request.headers.get("x-ins-auth-key")

    def record(status: int | None, fate: str, message_id: str | None = None) -> None:
        state.requests.append(
            ReceivedRequest(
                body=raw.decode("utf-8", errors="replace"),
                content_type=request.headers.get("Content-Type"),
                to=to,
                content=content,
                idempotency_key=request.headers.get("Idempotency-Key"),
                auth_key=auth_key,
                status=status,
                provider_message_id=message_id,
                received_at=received_at,
                fate=fate,
            )
        )

    if config.auth_key is not None and auth_key != config.auth_key:
        record(403, "forbidden")
        return _json(403, {"message": "Forbidden", "error": "x-ins-auth-key is missing or wrong"})
    if fault is not None:
        record(400, "bad_request")
        return _json(400, {"message": "Bad Request", "error": fault})

    # One draw per request; each fault owns a slice of [0, 1) as wide as its rate.
    draw = state.rng.random()
    if draw < (edge := config.hang_rate):
        record(None, "hang")
        # Wake early when the server stops, so shutdown never waits for a hang.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.stopping.wait(), config.hang_s)
        _drop(request)
    if draw < (edge := edge + config.reset_rate):
        record(None, "reset")
        _drop(request)
    if draw < (edge := edge + config.error_rate):
        record(config.error_status, "error")
        headers = {}
        if config.retry_after_s is not None:
            headers["Retry-After"] = f"{config.retry_after_s:g}"
        return _json(config.error_status, {"message": "Simulated failure"}, headers)
    message_id = str(uuid.uuid4())
    if draw < edge + config.broken_body_rate:
        record(202, "broken_body")
        return web.Response(status=202, text="<html>Accepted", content_type="text/html")
    record(202, "accepted", message_id)
    return _json(202, {"message": "Accepted", "messageId": message_id})


def _drop(request: web.Request) -> NoReturn:
    """Close the connection without an answer, then stop aiohttp from writing one."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


async def _list_requests(request: web.Request) -> web.Response:
    records = [
        {**dataclasses.asdict(r), "received_at": r.received_at.isoformat()}
        for r in request.app[_STATE].requests
    ]
    return _json(200, records)


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[_STATE].requests.clear()
    return _json(200, {"cleared": True})


async def _get_config(request: web.Request) -> web.Response:
    return _json(200, request.app[_STATE].config.to_dict())


async def _put_config(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        changes = json.loads(await request.read())
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object of knobs")
        state.config = state.config.updated(changes)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        return _json(400, {"message": "Bad Request", "error": str(exc)})
    return _json(200, state.config.to_dict())


async def _health(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def _on_shutdown(app: web.Application) -> None:
    app[_STATE].stopping.set()


def create_simulator_app(config: SimulatorConfig | None = None) -> web.Application:
    """Build the simulator's aiohttp application."""
    app = web.Application()
    app[_STATE] = _State(config or SimulatorConfig())
    app.router.add_get("/_sim/requests", _list_requests)
    app.router.add_delete("/_sim/requests", _clear_requests)
    app.router.add_get("/_sim/config", _get_config)
    app.router.add_put("/_sim/config", _put_config)
    app.router.add_get("/_sim/health", _health)
    app.router.add_post("/{tail:.*}", _provider)
    app.on_shutdown.append(_on_shutdown)
    return app


class RunningSimulator:
    """A simulator serving on a real port: its POST URL, its records and its knobs."""

    def __init__(self, app: web.Application, url: str) -> None:
        self._state = app[_STATE]
        self.url = url

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Return the recorded requests, oldest first (a snapshot)."""
        return list(self._state.requests)

    @property
    def config(self) -> SimulatorConfig:
        """The knobs in force; assign a new ``SimulatorConfig`` to change them."""
        return self._state.config

    @config.setter
    def config(self, config: SimulatorConfig) -> None:
        self._state.config = config


@asynccontextmanager
async def start_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    sock: socket.socket | None = None,
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator on ``sock`` if given, else ``host:port`` (0: an ephemeral port), until the block ends."""
    app = create_simulator_app(config)
    # handler_cancellation: a client that gives up on a hang frees its handler at once.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningSimulator(app, f"http://{shown}:{bound_port}/")
    finally:
        await runner.cleanup()


async def serve_simulator_forever(config: SimulatorConfig, sock: socket.socket) -> None:
    """Serve the simulator on the bound ``sock`` until cancelled; print the URL it listens on."""
    async with start_simulator(config, sock=sock) as simulator:
        print(f"provider simulator listening on {simulator.url}", flush=True)
        await asyncio.Event().wait()
