"""The provider simulator as its own process, for the benchmarks, with a delivery ledger.

    python bench/simserver.py [--latency-ms 0] [--jitter-ms 0] [--port 0] [--auth-key KEY] [--framework]

Prints ``provider simulator listening on <url>`` once ready. A ``POST`` on any path with a
JSON body holding string ``to`` and ``content`` answers like webhook.site:
``202 {"message": "Accepted", "messageId": "<uuid4>"}``, after ``--latency-ms`` (give or take up
to ``--jitter-ms``, uniformly, as a real provider's time varies); a body that
is not that answers 400, a wrong ``x-ins-auth-key`` (when ``--auth-key`` is given) 401.
Every 202 is counted under the request's ``Idempotency-Key``, so a run can check that each
message reached the provider exactly once: ``GET /_bench/ledger`` gives
``{"posts", "distinct_keys", "max_per_key"}`` and ``DELETE /_bench/ledger`` empties it.
Keys are held as 128-bit integers (a UUID's value), not strings, to keep the ledger small.

By default this is a lean HTTP/1.1 server: an ``asyncio.Protocol`` on uvloop with
``httptools`` (uvicorn's parser) and orjson, about a fifth of the CPU per request of the
service's own aiohttp simulator (``sms_dispatch.simulator``). The simulator shares the two
cores with the contender and PostgreSQL, so its CPU is taken from theirs: the lean server
leaves them more and measures the dispatchers rather than the simulator. ``--framework``
serves the service's own simulator instead (same answers, same ledger), for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from collections import Counter

import httptools
import orjson
import uvloop

LEDGER: Counter[int] = Counter()
JSON_HEADERS = b"Content-Type: application/json\r\n"


def _key(raw: bytes | None) -> int:
    try:
        return uuid.UUID(raw.decode() if raw else "").int
    except ValueError:
        return hash(raw)


def _response(status: bytes, body: bytes, *, keep_alive: bool) -> bytes:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    head = b"HTTP/1.1 " + status + b"\r\n" + JSON_HEADERS + connection
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def _ledger_body() -> bytes:
    return orjson.dumps(
        {
            "posts": sum(LEDGER.values()),
            "distinct_keys": len(LEDGER),
            "max_per_key": max(LEDGER.values(), default=0),
        }
    )


class SimProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer each in order."""

    def __init__(self, latency_s: float, auth_key: bytes | None, jitter_s: float = 0.0) -> None:
        self._latency_s = latency_s
        self._jitter_s = min(jitter_s, latency_s)
        self._auth_key = auth_key
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._idempotency_key: bytes | None = None
        self._auth: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(
                _response(b"400 Bad Request", b'{"error":"bad request"}', keep_alive=False), close=True
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._body, self._idempotency_key, self._auth = b"", [], None, None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"idempotency-key":
            self._idempotency_key = value
        elif lowered == b"x-ins-auth-key":
            self._auth = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self._parser.should_keep_alive()
        method = self._parser.get_method()
        if self._url.startswith(b"/_bench/ledger"):
            if method == b"DELETE":
                LEDGER.clear()
            self._send(_response(b"200 OK", _ledger_body(), keep_alive=keep_alive), close=not keep_alive)
            return
        status, body = self._answer(method)
        answer = _response(status, body, keep_alive=keep_alive)
        if self._latency_s > 0:
            delay_s = (
                self._latency_s + random.uniform(-self._jitter_s, self._jitter_s)
                if self._jitter_s
                else self._latency_s
            )
            asyncio.get_running_loop().call_later(delay_s, self._send, answer, not keep_alive)
        else:
            self._send(answer, close=not keep_alive)

    def _answer(self, method: bytes) -> tuple[bytes, bytes]:
        if method != b"POST":
            return b"405 Method Not Allowed", b'{"error":"only POST"}'
        if self._auth_key is not None and self._auth != self._auth_key:
            return b"401 Unauthorized", b'{"error":"missing or wrong x-ins-auth-key"}'
        try:
            payload = orjson.loads(b"".join(self._body))
        except orjson.JSONDecodeError:
            return b"400 Bad Request", b'{"error":"the body is not JSON"}'
        if not (
            isinstance(payload, dict)
            and isinstance(payload.get("to"), str)
            and isinstance(payload.get("content"), str)
        ):
            return b"400 Bad Request", b'{"error":"to and content must be strings"}'
        LEDGER[_key(self._idempotency_key)] += 1
        return b"202 Accepted", b'{"message":"Accepted","messageId":"' + str(uuid.uuid4()).encode() + b'"}'

    def _send(self, data: bytes, close: bool = False) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if close:
            transport.close()


async def serve(latency_ms: float, port: int, auth_key: str | None, jitter_ms: float = 0.0) -> None:
    """Serve the lean simulator until killed."""
    loop = asyncio.get_running_loop()
    key = auth_key.encode() if auth_key else None
    server = await loop.create_server(
        lambda: SimProtocol(latency_ms / 1000, key, jitter_ms / 1000), "127.0.0.1", port, backlog=4096
    )
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"provider simulator listening on http://{host}:{bound}/", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    """Parse the options and serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="vary each answer's delay by up to this")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth-key", default=None, help="answer 401 unless x-ins-auth-key is this")
    parser.add_argument(
        "--framework", action="store_true", help="serve sms_dispatch.simulator (aiohttp) instead"
    )
    args = parser.parse_args()
    if args.framework:
        from simserver_framework import serve as serve_framework

        uvloop.run(serve_framework(args.latency_ms, args.port))
    else:
        uvloop.run(serve(args.latency_ms, args.port, args.auth_key, args.jitter_ms))


if __name__ == "__main__":
    main()
