"""Request ids and the access log, as plain ASGI middleware around the whole application.

Every HTTP request gets a request id: the caller's ``X-Request-ID`` when it is sane (1 to 128
letters, digits and ``-_.:``), else a new one. It is bound into structlog's context for the
request (every line logged while serving it carries ``request_id``), returned in the
``X-Request-ID`` response header, and written on one access line with the method, path,
status and ``latency_ms`` (at ERROR for a 5xx, WARNING for a 503: a dependency is away). The
middleware sits outside Starlette's error handling, so a 500 answer gets its header and its
access line too, and the error it logged is not raised again for the server to log twice.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sms_dispatch.logs import get_logger

log = get_logger("sms_dispatch.access")

HEADER = "X-Request-ID"
LOGGED_ERROR = "sms_dispatch_logged_error"
"""The ``request.state`` key where the 500 handler leaves the error it logged with its traceback."""
_HEADER_KEY = HEADER.lower().encode()
_SANE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """Return the caller's request id if it is sane, else a new random one."""
    for name, value in headers:
        if name.lower() == _HEADER_KEY:
            candidate = value.decode("latin-1").strip()
            if _SANE.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Give each HTTP request an id, bind it for logging, return it, and log one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; HTTP requests get an id and an access line."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # request.state lives here; inner copies of the scope (a HEAD served as GET) share it.
        state = scope.setdefault("state", {})
        request_id = request_id_from(scope.get("headers", []))
        method = scope.get("method", "")  # as asked: a HEAD is served as a GET inside
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, (_HEADER_KEY, request_id.encode())]}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                # Logged once with its traceback and answered 500 already: the server would only
                # log it again, without the request id.
                if state.get(LOGGED_ERROR) is not exc:
                    raise
            finally:
                _access_line(scope, method, status, started)


class HeadAsGetMiddleware:
    """Answer ``HEAD`` on every ``GET`` route: served as the GET, with its headers and no body.

    FastAPI routes a ``HEAD`` to no ``GET`` route (405, while the 405s say ``Allow: GET, HEAD``).
    The inner application sees a copy of the scope with ``GET``: the server's own scope keeps
    ``HEAD``, so it still knows to send no body after a ``Content-Length``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a HEAD as a GET whose body is dropped; anything else unchanged."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def _access_line(scope: Scope, method: str, status: int, started: float) -> None:
    fields: dict[str, Any] = {
        "method": method,
        "path": scope.get("path", ""),
        "status": status,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    client = scope.get("client")
    if client:
        fields["client"] = client[0]
    if status == 503:
        # A dependency is away: the outage has its own WARNING line; this one is per request.
        log.warning("request", **fields)
    elif status >= 500:
        log.error("request", **fields)
    else:
        log.info("request", **fields)
