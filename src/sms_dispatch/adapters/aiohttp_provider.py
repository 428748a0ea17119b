"""The webhook SMS provider over aiohttp (``PROVIDER_HTTP_CLIENT=aiohttp``).

The default client is pyreqwest (``reqwest_provider.py``), which costs less CPU per request
(``bench/http_clients.py``); this one is kept as the pure-Python choice. Both send the same
request and classify answers the same way (``provider_answers.py``); neither follows
redirects, keeps cookies or reads proxy variables.

The answer body is read with a limit (``content.read(n)``), never whole: at most
``MAX_ANSWER_BYTES + 1`` bytes, counted after aiohttp undoes gzip or deflate. A limited read
also keeps aiohttp inflating in steps of about that size (``response.read()`` lifts that cap).
A normal answer arrives whole with its end, so one read gets it; an answer past the bound is
left unread and its connection closed rather than pooled half-read.
"""

from __future__ import annotations

import aiohttp

from sms_dispatch.adapters.provider_answers import ANSWER_READ_BYTES, ProviderAnswers, is_oversized
from sms_dispatch.domain import Message, SendResult


class AiohttpSmsProvider:
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
        self._answers = ProviderAnswers(auth_key=auth_key, idempotency_header=idempotency_header)
        self._timeout = aiohttp.ClientTimeout(total=5.0)

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Send one message and classify the answer; never raises for provider faults."""
        answers = self._answers
        try:
            async with self._session.post(
                self._url,
                data=answers.body(message),
                headers=answers.headers(message),
                timeout=self._timeout_for(timeout_s),
                allow_redirects=False,
            ) as response:
                body = await _read_bounded(response.content)
                cut_short = is_oversized(body)
                if cut_short:
                    response.close()  # the rest stays unread: the connection is not pooled
                status = response.status
                retry_after = response.headers.get("Retry-After") if answers.retryable(status) else None
        except TimeoutError:  # asyncio.TimeoutError and aiohttp.ServerTimeoutError alike
            return answers.timed_out(timeout_s)
        except (aiohttp.ClientError, OSError) as exc:
            return answers.connection_failed(exc)
        return answers.classify(status, body, retry_after, oversized=cut_short)

    def _timeout_for(self, timeout_s: float) -> aiohttp.ClientTimeout:
        # Callers almost always pass the same timeout: reuse the last one rather than build one.
        if self._timeout.total != timeout_s:
            self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        return self._timeout


async def _read_bounded(content: aiohttp.StreamReader) -> bytes:
    """Return the whole body, or its first ``ANSWER_READ_BYTES`` bytes when it is longer."""
    body = await content.read(ANSWER_READ_BYTES)
    if content.at_eof():  # the common case: the answer came in one piece
        return body
    parts, size = [body], len(body)
    while size < ANSWER_READ_BYTES:
        part = await content.read(ANSWER_READ_BYTES - size)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def create_aiohttp_session(*, max_connections: int) -> aiohttp.ClientSession:
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
        cookie_jar=aiohttp.DummyCookieJar(),  # a provider's or balancer's cookies are not sent back
        headers={"User-Agent": "sms-dispatch"},
        raise_for_status=False,
    )


__all__ = ["AiohttpSmsProvider", "create_aiohttp_session"]
