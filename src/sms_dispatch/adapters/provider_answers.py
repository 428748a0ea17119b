"""How a provider answer becomes a ``SendResult``: shared by both HTTP clients.

``send`` never raises for provider faults; each answer is classified with an error class:

    2xx with a JSON ``messageId``           DELIVERED
    2xx without one                         PERMANENT  bad_response (the provider may have sent it)
    2xx over MAX_ANSWER_BYTES               PERMANENT  bad_response (accepted: never sent again; not parsed)
    408, 429, 5xx (any size)                RETRYABLE  http_4xx, http_429, http_5xx (Retry-After honoured)
    other status (any size)                 PERMANENT  http_4xx (or http_3xx, ...)
    timeout                                 RETRYABLE  timeout
    connection error or reset               RETRYABLE  connection

Both clients read at most ``MAX_ANSWER_BYTES + 1`` bytes of a body, counted after any
Content-Encoding is undone, and drop the connection of an answer they stop reading: a huge
answer or a gzip bomb costs a bounded amount of memory, and the byte past the bound tells an
oversized answer from one of exactly ``MAX_ANSWER_BYTES``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

from sms_dispatch.domain import PROVIDER_ID_MAX_LENGTH, Message, Outcome, SendResult, without_nul

RAW_RESPONSE_LIMIT = 2_000
MAX_ANSWER_BYTES = 65_536
"""The most bytes of an answer body that count (64 KiB; real answers are a few dozen)."""
ANSWER_READ_BYTES = MAX_ANSWER_BYTES + 1
"""What either client reads at most: one byte past the bound tells an oversized answer from one
of exactly ``MAX_ANSWER_BYTES``."""
_SNIPPET_LIMIT = 200
_RETRYABLE_STATUSES = frozenset({408, 429})
# Short keys would redact innocent text; real provider keys are much longer than this.
_MIN_REDACTED_KEY_LENGTH = 4


class ProviderAnswers:
    """The request both clients send and the classification of what comes back."""

    def __init__(self, *, auth_key: str, idempotency_header: str) -> None:
        self._auth_key = auth_key
        self._idempotency_header = idempotency_header
        self._headers = {"Content-Type": "application/json", "x-ins-auth-key": auth_key}

    def headers(self, message: Message) -> dict[str, str]:
        """Return the request headers: JSON, the auth key and the message's idempotency key."""
        return {**self._headers, self._idempotency_header: str(message.id)}

    @staticmethod
    def body(message: Message) -> bytes:
        """Return the request body.

        orjson gives the same compact UTF-8 JSON as ``json.dumps(ensure_ascii=False)`` at a
        fraction of the cost on the hot path.
        """
        return orjson.dumps({"to": message.to, "content": message.content})

    @staticmethod
    def timed_out(timeout_s: float) -> SendResult:
        """The result of a send that got no answer in time."""
        return SendResult(
            Outcome.RETRYABLE, error=f"timed out after {float(timeout_s)}s", error_class="timeout"
        )

    def connection_failed(self, exc: BaseException, detail: str | None = None) -> SendResult:
        """The result of a send whose connection failed or was reset (``detail``: else ``str(exc)``)."""
        detail = str(exc) if detail is None else detail
        name = type(exc).__name__
        described = f"connection failed: {name}: {detail}" if detail else f"connection failed: {name}"
        return SendResult(Outcome.RETRYABLE, error=self.redact(described), error_class="connection")

    def classify(
        self, status: int, body: bytes, retry_after: str | None, *, oversized: bool = False
    ) -> SendResult:
        """Classify an HTTP answer (see the module table).

        ``oversized``: the body ran past ``MAX_ANSWER_BYTES`` and ``body`` is only its start.
        """
        text = self.redact(body.decode("utf-8", errors="replace"))
        raw = text[:RAW_RESPONSE_LIMIT]
        snippet = text[:_SNIPPET_LIMIT]
        if 200 <= status < 300:
            if oversized:  # the provider took the message: resending it could deliver it twice
                return SendResult(
                    Outcome.PERMANENT,
                    http_status=status,
                    raw_response=raw,
                    error=(
                        f"provider answered {status} with a body larger than {MAX_ANSWER_BYTES} bytes"
                        " (64 KiB); it was not read for a messageId"
                    ),
                    error_class="bad_response",
                )
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
        if self.retryable(status):
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

    @staticmethod
    def retryable(status: int) -> bool:
        """Return True for an HTTP status worth retrying (the only answers whose Retry-After counts)."""
        return status >= 500 or status in _RETRYABLE_STATUSES

    def redact(self, text: str) -> str:
        """Return ``text`` with the auth key masked (an echoing provider must not leak it)."""
        if len(self._auth_key) >= _MIN_REDACTED_KEY_LENGTH:
            return text.replace(self._auth_key, "***")
        return text


def is_oversized(body: bytes) -> bool:
    """Return True when a body read up to ``ANSWER_READ_BYTES`` ran past ``MAX_ANSWER_BYTES``."""
    return len(body) > MAX_ANSWER_BYTES


def _message_id(body: bytes) -> str | None:
    """Return the answer's ``messageId`` as every store and the cache keep it: a NUL as U+FFFD,
    at most ``PROVIDER_ID_MAX_LENGTH`` characters (the whole answer stays in ``raw_response``)."""
    try:
        parsed = orjson.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return None
    if isinstance(parsed, dict):
        message_id = parsed.get("messageId")
        if isinstance(message_id, str) and message_id:
            return without_nul(message_id)[:PROVIDER_ID_MAX_LENGTH]
    return None


def error_class(status: int) -> str:
    """Return the error class of an HTTP status: ``http_429``, else ``http_4xx``, ``http_5xx``, ..."""
    return "http_429" if status == 429 else f"http_{status // 100}xx"


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


__all__ = [
    "ANSWER_READ_BYTES",
    "MAX_ANSWER_BYTES",
    "RAW_RESPONSE_LIMIT",
    "ProviderAnswers",
    "error_class",
    "is_oversized",
    "parse_retry_after",
]
