"""The webhook SMS provider over pyreqwest, the default client (``PROVIDER_HTTP_CLIENT=pyreqwest``).

pyreqwest runs Rust's reqwest/hyper HTTP stack behind an asyncio API: connection pool, HTTP/1.1
parsing and TLS (rustls) happen outside the interpreter. Measured side by side with aiohttp
against the same provider (``bench/http_clients.py``), it takes 48-60 % of aiohttp's CPU per
request on uvloop from 8 to 1,000 in flight (on plain asyncio little), and the
provider call is the largest share of the dispatcher's CPU. It sends the same request as the
aiohttp client and classifies answers the same way (``provider_answers.py``).

Like the aiohttp session it follows no redirect, keeps no cookies and ignores proxy variables
in the environment: the provider URL is called as configured. The per-send timeout bounds
everything (waiting for a pooled connection, connecting, the answer), as aiohttp's total does.

The answer body is streamed (``build_streamed``) so that no more than ``MAX_ANSWER_BYTES + 1``
bytes of it are read; pyreqwest undoes gzip, brotli, zstd and deflate first, so the bound counts
inflated bytes. Before ``async with`` hands over a streamed response, pyreqwest reads its body
up to the read buffer limit; with the limit at the bound a normal answer is read whole in that
step, as ``build()`` would: one read, no background task. A longer one leaves a background
reader holding at most two more buffers of that size, until leaving the ``async with`` closes
the stream and drops the connection rather than pool it half-read.
"""

from __future__ import annotations

from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError, RequestTimeoutError
from pyreqwest.response import Response

from sms_dispatch.adapters.provider_answers import ANSWER_READ_BYTES, ProviderAnswers, is_oversized
from sms_dispatch.domain import Message, SendResult

_SESSION_TIMEOUT = timedelta(seconds=30)
_IDLE_TIMEOUT = timedelta(seconds=30)


class ReqwestSmsProvider:
    """Send messages to a webhook.site-style provider: ``POST {"to", "content"}`` -> 202."""

    def __init__(
        self,
        client: Client,
        *,
        url: str,
        auth_key: str,
        idempotency_header: str = "Idempotency-Key",
    ) -> None:
        self._client = client
        self._url = url
        self._answers = ProviderAnswers(auth_key=auth_key, idempotency_header=idempotency_header)
        self._timeout_s = 5.0
        self._timeout = timedelta(seconds=self._timeout_s)

    async def send(self, message: Message, *, timeout_s: float) -> SendResult:
        """Send one message and classify the answer; never raises for provider faults."""
        answers = self._answers
        if timeout_s != self._timeout_s:  # callers almost always pass the same timeout
            self._timeout_s, self._timeout = timeout_s, timedelta(seconds=timeout_s)
        try:
            request = (
                self._client.post(self._url)
                .headers(answers.headers(message))
                .body_bytes(answers.body(message))
                .timeout(self._timeout)
                .streamed_read_buffer_limit(ANSWER_READ_BYTES)
                .build_streamed()
            )
            async with request as response:
                chunk = await response.body_reader.read(ANSWER_READ_BYTES)
                status = response.status
                retry_after = _retry_after(response) if answers.retryable(status) else None
        except RequestTimeoutError:  # connecting, waiting for a pooled connection or the answer
            return answers.timed_out(timeout_s)
        except PyreqwestError as exc:  # connection errors and resets; a URL it cannot call
            return answers.connection_failed(exc, _describe(exc))
        except ValueError as exc:  # a header it cannot send (startup checks the settings)
            return answers.connection_failed(exc)
        body = b"" if chunk is None else bytes(chunk)
        return answers.classify(status, body, retry_after, oversized=is_oversized(body))


def _retry_after(response: Response) -> str | None:
    """Return the Retry-After header, or None when absent or not text (pyreqwest raises then)."""
    try:
        return response.get_header("Retry-After")
    except (PyreqwestError, ValueError, RuntimeError):
        return None


def _describe(exc: PyreqwestError) -> str:
    """Return the error and its causes as one line (``str`` would print the details dict)."""
    details = getattr(exc, "details", None) or {}
    causes = [cause["message"] for cause in details.get("causes") or ()]
    return ": ".join([exc.message, *causes])


def create_reqwest_client(*, max_connections: int) -> Client:
    """Build the one pooled keep-alive client for provider calls.

    Close it with ``await client.close()`` when done; the composition root owns it.
    """
    return (
        ClientBuilder()
        .max_connections(max_connections)
        .error_for_status(False)
        .follow_redirects(False)
        .no_proxy()
        .user_agent("sms-dispatch")
        .timeout(_SESSION_TIMEOUT)  # each send passes its own, shorter total timeout
        .pool_idle_timeout(_IDLE_TIMEOUT)
        .build()
    )


__all__ = ["ReqwestSmsProvider", "create_reqwest_client"]
