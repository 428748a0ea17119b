"""How both provider clients build the request and classify answers (``provider_answers.py``), no I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from sms_dispatch.adapters.provider_answers import (
    MAX_ANSWER_BYTES,
    RAW_RESPONSE_LIMIT,
    ProviderAnswers,
    parse_retry_after,
)
from sms_dispatch.domain import Message, Outcome, Status

KEY = "INS.secret-provider-key"


def message() -> Message:
    """A claimed message as the core hands it to a provider client."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Message(
        id=uuid.uuid4(), to="+905551111111", content="Merhaba dünya", status=Status.SENDING,
        attempts=1, created_at=now, updated_at=now,
    )  # fmt: skip


def answers(key: str = KEY) -> ProviderAnswers:
    """The shared request builder and classifier."""
    return ProviderAnswers(auth_key=key, idempotency_header="Idempotency-Key")


def test_the_request_is_compact_utf8_json_with_the_auth_and_idempotency_headers() -> None:
    """The body is exactly ``{"to", "content"}`` (UTF-8, no escapes); the headers carry key and id."""
    sent = message()
    assert answers().body(sent) == '{"to":"+905551111111","content":"Merhaba dünya"}'.encode()
    assert answers().headers(sent) == {
        "Content-Type": "application/json",
        "x-ins-auth-key": KEY,
        "Idempotency-Key": str(sent.id),
    }


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "outcome", "error_class"),
    [
        (202, b'{"message":"Accepted","messageId":"p-1"}', None, Outcome.DELIVERED, None),
        (200, b'{"messageId":"p-1"}', None, Outcome.DELIVERED, None),
        (202, b"<html>ok", None, Outcome.PERMANENT, "bad_response"),
        (202, b'{"messageId":""}', None, Outcome.PERMANENT, "bad_response"),
        (202, b'["messageId"]', None, Outcome.PERMANENT, "bad_response"),
        (202, b"\xff\xfe", None, Outcome.PERMANENT, "bad_response"),
        (500, b"oops", None, Outcome.RETRYABLE, "http_5xx"),
        (503, b"", "30", Outcome.RETRYABLE, "http_5xx"),
        (429, b"", "7", Outcome.RETRYABLE, "http_429"),
        (408, b"", None, Outcome.RETRYABLE, "http_4xx"),
        (400, b"bad", None, Outcome.PERMANENT, "http_4xx"),
        (302, b"", None, Outcome.PERMANENT, "http_3xx"),
    ],
)
def test_each_answer_is_classified_as_the_module_table_says(
    status: int, body: bytes, retry_after: str | None, outcome: Outcome, error_class: str | None
) -> None:
    """Status and body decide the outcome and the error class; Retry-After only when retryable."""
    result = answers().classify(status, body, retry_after)
    assert (result.outcome, result.error_class, result.http_status) == (outcome, error_class, status)
    if outcome is Outcome.DELIVERED:
        assert result.provider_message_id == "p-1"
    assert result.retry_after_s == (float(retry_after) if retry_after else None)


def test_a_body_echoing_the_key_is_kept_and_reported_without_it() -> None:
    """A provider that echoes the auth key back never puts it in the error or the kept body."""
    echoed = orjson.dumps({"error": "bad key", "key": KEY})
    for status in (500, 403, 202):
        result = answers().classify(status, echoed, None)
        assert result.error is not None
        assert KEY not in result.error
        assert result.raw_response is not None
        assert KEY not in result.raw_response
        assert "***" in result.raw_response


def test_a_connection_error_naming_the_key_is_redacted() -> None:
    """An exception text carrying the key (a URL with it, say) is redacted in the error."""
    result = answers().connection_failed(OSError(f"cannot reach https://x/?k={KEY}"))
    assert (result.outcome, result.error_class) == (Outcome.RETRYABLE, "connection")
    assert result.error == "connection failed: OSError: cannot reach https://x/?k=***"


def test_a_very_short_key_is_not_redacted_from_innocent_text() -> None:
    """A key of under 4 characters would mask ordinary words, so it is left alone."""
    result = answers(key="ab").classify(500, b"table", None)
    assert result.raw_response == "table"


def test_the_kept_body_is_bounded() -> None:
    """Only the first RAW_RESPONSE_LIMIT characters of an answer are kept."""
    result = answers().classify(500, b"x" * (RAW_RESPONSE_LIMIT * 3), None)
    assert result.raw_response == "x" * RAW_RESPONSE_LIMIT


def test_the_provider_id_is_kept_as_the_stores_keep_it() -> None:
    """A messageId holding a NUL, or longer than the column, is delivered with the id every store
    and the cache key keep: the NUL as U+FFFD, cut to 100 characters; the answer itself is kept."""
    odd = answers().classify(202, b'{"messageId":"m\\u00001"}', None)
    long = answers().classify(202, orjson.dumps({"messageId": "p" * 150}), None)
    assert (odd.outcome, odd.provider_message_id) == (Outcome.DELIVERED, "m\ufffd1")
    assert (long.outcome, long.provider_message_id) == (Outcome.DELIVERED, "p" * 100)
    assert long.raw_response is not None and "p" * 150 in long.raw_response


def test_the_answer_bound_is_64_kib() -> None:
    """Both clients read at most 64 KiB of an answer (one byte more tells them it is over)."""
    assert MAX_ANSWER_BYTES == 65_536


def test_an_oversized_accepted_answer_is_permanent_and_not_parsed() -> None:
    """A 2xx over the bound is PERMANENT ``bad_response`` naming the limit, even with a messageId.

    The provider accepted the message, so it must not be sent again; the start is kept.
    """
    start = b'{"message":"Accepted","messageId":"p-1"}'.ljust(MAX_ANSWER_BYTES + 1)
    result = answers().classify(202, start, None, oversized=True)
    assert (result.outcome, result.error_class, result.http_status) == (
        Outcome.PERMANENT,
        "bad_response",
        202,
    )
    assert result.provider_message_id is None
    assert result.error == (
        "provider answered 202 with a body larger than 65536 bytes (64 KiB); it was not read for a messageId"
    )
    assert result.raw_response == start[:RAW_RESPONSE_LIMIT].decode()


@pytest.mark.parametrize(
    ("status", "retry_after", "outcome", "error_class"),
    [
        (503, "30", Outcome.RETRYABLE, "http_5xx"),
        (429, "7", Outcome.RETRYABLE, "http_429"),
        (408, None, Outcome.RETRYABLE, "http_4xx"),
        (400, None, Outcome.PERMANENT, "http_4xx"),
        (302, None, Outcome.PERMANENT, "http_3xx"),
    ],
)
def test_an_oversized_answer_of_another_status_is_classified_as_by_its_status(
    status: int, retry_after: str | None, outcome: Outcome, error_class: str
) -> None:
    """Over the bound, a non-2xx answer keeps its outcome, error class and Retry-After."""
    start = b"busy" * (MAX_ANSWER_BYTES // 4) + b"!"
    result = answers().classify(status, start, retry_after, oversized=True)
    assert (result.outcome, result.error_class, result.http_status) == (outcome, error_class, status)
    assert result.retry_after_s == (float(retry_after) if retry_after else None)
    assert result.raw_response == start[:RAW_RESPONSE_LIMIT].decode()


def test_a_timeout_names_the_limit() -> None:
    """A send with no answer in time is RETRYABLE ``timeout`` naming the limit."""
    result = answers().timed_out(2)
    assert (result.outcome, result.error_class, result.error) == (
        Outcome.RETRYABLE,
        "timeout",
        "timed out after 2.0s",
    )


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:59:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("-3", None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date (past dates mean now); anything else is None."""
    assert parse_retry_after(header, now=NOW) == expected
