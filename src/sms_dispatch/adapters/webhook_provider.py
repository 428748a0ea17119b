"""The webhook SMS provider over aiohttp: one pooled keep-alive session, answers classified.

aiohttp was chosen by measurement (``bench/http_clients.py``): httpx's pool collapses as
concurrency grows, aiohttp holds its rate.

How an answer is classified (``send`` never raises for provider faults), with its error class:

    2xx with a JSON ``messageId``           DELIVERED
    2xx without one                         PERMANENT  bad_response (the provider may have sent it)
    408, 429, 5xx                           RETRYABLE  http_4xx, http_429, http_5xx (Retry-After honoured)
    other status                            PERMANENT  http_4xx (or http_3xx, ...)
    timeout                                 RETRYABLE  timeout
    connection error or reset               RETRYABLE  connection
"""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
import orjson

from sms_dispatch.domain import Message, Outcome, SendResult

RAW_RESPONSE_LIMIT = 2_000
_SNIPPET_LIMIT = 200
_RETRYABLE_STATUSES = frozenset({408, 429})
# Short keys would redact innocent text; real provider keys are much longer than this.
_MIN_REDACTED_KEY_LENGTH = 4


class WebhookSmsProvider:
    """Send messages to a webhook.site-style provider: ``POST {"to", "content"}`` -> 202."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        url: str,
        auth_key: str,
        idempotency_header: str = "Idempotency-Key",
    ) -> None:
        self._session = session
        self._url = url
        self._auth_key = auth_key
        self._idempotency_header = idempotency_header
        self._headers = {"Content-Type": "application/json", "x-ins-auth-key": auth_key}
        self._timeout = aiohttp.ClientTimeout(total=5.0)

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Send one message and classify the answer; never raises for provider faults."""
        headers = {**self._headers, self._idempotency_header: str(message.id)}
        # orjson: the same compact UTF-8 JSON as json.dumps(ensure_ascii=False), at a fraction of
        # the cost on the hot path (the Content-Type header is already in ``headers``).
        request_body = orjson.dumps({"to": message.to, "content": message.content})
        try:
            async with self._session.post(
                self._url,
                data=request_body,
                headers=headers,
                timeout=self._timeout_for(timeout_s),
                allow_redirects=False,
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:  # asyncio.TimeoutError and aiohttp.ServerTimeoutError alike
            return SendResult(
                Outcome.RETRYABLE, error=f"timed out after {float(timeout_s)}s", error_class="timeout"
            )
        except (aiohttp.ClientError, OSError) as exc:
            return SendResult(Outcome.RETRYABLE, error=self._redact(_describe(exc)), error_class="connection")
        return self._classify(status, body, retry_after)

    def _classify(self, status: int, body: bytes, retry_after: str | None) -> SendResult:
        text = self._redact(body.decode("utf-8", errors="replace"))
        raw = text[:RAW_RESPONSE_LIMIT]
        snippet = text[:_SNIPPET_LIMIT]
        if 200 <= status < 300:
            message_id = _message_id(body)
            if message_id is not None:
                return SendResult(
                    Outcome.DELIVERED,
                    provider_message_id=message_id,
                    http_status=status,
                    raw_response=raw,
                )
            return SendResult(
                Outcome.PERMANENT,
                http_status=status,
                raw_response=raw,
                error=f"provider answered {status} but the body has no messageId: {snippet!r}",
                error_class="bad_response",
            )
        if status >= 500 or status in _RETRYABLE_STATUSES:
            return SendResult(
                Outcome.RETRYABLE,
                http_status=status,
                raw_response=raw,
                error=f"provider answered HTTP {status}: {snippet}",
                retry_after_s=parse_retry_after(retry_after, now=datetime.now(UTC)),
                error_class=error_class(status),
            )
        return SendResult(
            Outcome.PERMANENT,
            http_status=status,
            raw_response=raw,
            error=f"provider rejected the message: HTTP {status} {snippet}",
            error_class=error_class(status),
        )

    def _timeout_for(self, timeout_s: float) -> aiohttp.ClientTimeout:
        # Callers almost always pass the same timeout: reuse the last one rather than build one.
        if self._timeout.total != timeout_s:
            self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        return self._timeout

    def _redact(self, text: str) -> str:
        if len(self._auth_key) >= _MIN_REDACTED_KEY_LENGTH:
            return text.replace(self._auth_key, "***")
        return text


def _message_id(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None
    if isinstance(parsed, dict):
        message_id = parsed.get("messageId")
        if isinstance(message_id, str) and message_id:
            return message_id
    return None


def error_class(status: int) -> str:
    """Return the error class of an HTTP status: ``http_429``, else ``http_4xx``, ``http_5xx``, ..."""
    return "http_429" if status == 429 else f"http_{status // 100}xx"


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    name = type(exc).__name__
    return f"connection failed: {name}: {detail}" if detail else f"connection failed: {name}"


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Return the ``Retry-After`` wait in seconds (delta-seconds or HTTP-date), or None if bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def create_provider_session(*, max_connections: int) -> aiohttp.ClientSession:
    """Build the one pooled keep-alive session for provider calls.

    Call it inside a running event loop (aiohttp binds the session to it) and close it
    with ``await session.close()`` when done; the composition root owns both.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,  # one provider host: ``limit`` is the bound that matters
        keepalive_timeout=30.0,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Each send passes its own total timeout; this guards any other use of the session.
        timeout=aiohttp.ClientTimeout(total=30.0, sock_connect=5.0),
        json_serialize=functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":")),
        headers={"User-Agent": "sms-dispatch"},
        raise_for_status=False,
    )
