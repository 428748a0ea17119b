"""The bound on how much of an answer either client reads (``MAX_ANSWER_BYTES``), on both clients.

A huge answer, sent whole, in chunks or as a small gzip body that inflates past the bound, is
read no further than the bound: the raw server sees the client hang up before it could write
it all, and the next send on the same client still delivers.
"""

from __future__ import annotations

import gzip

import pytest

from sms_dispatch.adapters.provider_answers import MAX_ANSWER_BYTES, RAW_RESPONSE_LIMIT
from sms_dispatch.domain import Outcome
from tests.integration.provider_clients import ACCEPTED, ProviderFactory, RawServer, answer, make_message

HUGE_BYTES = 10 * 1024 * 1024
"""10 MiB: about ten times what the raw server gets written (under 1 MiB) before a bounded client hangs up."""

HUGE_ACCEPTED = ACCEPTED.ljust(HUGE_BYTES)
"""A valid 202 body with a messageId, padded with JSON whitespace: parsed whole, it would deliver."""


def oversized_answer(framing: str) -> bytes:
    """A 202 past the bound: with a Content-Length, chunked, or gzip-compressed under the bound."""
    if framing == "gzip":
        inflating = gzip.compress(HUGE_ACCEPTED)
        assert len(inflating) < MAX_ANSWER_BYTES
        return answer("202 Accepted", inflating, b"Content-Encoding: gzip")
    return answer("202 Accepted", HUGE_ACCEPTED, chunked=framing == "chunked")


@pytest.mark.parametrize(
    ("size", "outcome"),
    [
        (MAX_ANSWER_BYTES - 1, Outcome.DELIVERED),
        (MAX_ANSWER_BYTES, Outcome.DELIVERED),
        (MAX_ANSWER_BYTES + 1, Outcome.PERMANENT),
    ],
)
async def test_the_bound_is_exact(
    make_provider: ProviderFactory, raw_server: RawServer, size: int, outcome: Outcome
) -> None:
    """A 202 of up to MAX_ANSWER_BYTES is read and delivered; one byte more is not read for a messageId."""
    raw_server.answer = answer("202 Accepted", ACCEPTED.ljust(size))
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=5)
    assert result.outcome is outcome


async def test_a_huge_accepted_answer_is_permanent_and_not_read_whole(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 10 MiB 202 is PERMANENT ``bad_response`` naming the limit; the client hangs up early."""
    raw_server.answer = answer("202 Accepted", HUGE_ACCEPTED)
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=5)
    assert (result.outcome, result.error_class, result.http_status) == (
        Outcome.PERMANENT,
        "bad_response",
        202,
    )
    assert result.error is not None
    assert f"larger than {MAX_ANSWER_BYTES} bytes (64 KiB)" in result.error
    assert result.raw_response == HUGE_ACCEPTED[:RAW_RESPONSE_LIMIT].decode()
    [written] = await raw_server.answers_ended(1)
    assert written < len(raw_server.answer)


async def test_a_huge_chunked_answer_is_not_read_whole(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 10 MiB 202 in Transfer-Encoding chunks is bounded too: PERMANENT, cut short."""
    raw_server.answer = oversized_answer("chunked")
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=5)
    assert (result.outcome, result.error_class) == (Outcome.PERMANENT, "bad_response")
    [written] = await raw_server.answers_ended(1)
    assert written < len(raw_server.answer)


async def test_a_huge_server_error_is_retryable_and_not_read_whole(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 503 with a 10 MiB body stays RETRYABLE ``http_5xx`` with its Retry-After; cut short."""
    raw_server.answer = answer("503 Service Unavailable", b"busy".ljust(HUGE_BYTES, b"!"), b"Retry-After: 7")
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=5)
    assert (result.outcome, result.error_class, result.retry_after_s) == (Outcome.RETRYABLE, "http_5xx", 7.0)
    assert result.raw_response == "busy" + "!" * (RAW_RESPONSE_LIMIT - 4)
    [written] = await raw_server.answers_ended(1)
    assert written < len(raw_server.answer)


async def test_a_small_gzip_body_is_bounded_by_what_it_inflates_to(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """Both clients inflate gzip: a 10 KiB body that inflates to 10 MiB is over the bound."""
    raw_server.answer = oversized_answer("gzip")
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=5)
    assert (result.outcome, result.error_class) == (Outcome.PERMANENT, "bad_response")
    assert result.raw_response == ACCEPTED.ljust(RAW_RESPONSE_LIMIT).decode()


async def test_a_small_gzip_body_under_the_bound_is_delivered(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A gzip 202 that inflates to exactly MAX_ANSWER_BYTES is read and delivered."""
    raw_server.answer = answer(
        "202 Accepted", gzip.compress(ACCEPTED.ljust(MAX_ANSWER_BYTES)), b"Content-Encoding: gzip"
    )
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=5)
    assert (result.outcome, result.provider_message_id) == (Outcome.DELIVERED, "p-1")


@pytest.mark.parametrize("framing", ["content-length", "chunked", "gzip"])
async def test_the_next_send_after_an_oversized_answer_works(
    make_provider: ProviderFactory, raw_server: RawServer, framing: str
) -> None:
    """An oversized answer leaves no half-read connection in the pool: the next send delivers."""
    provider = make_provider(raw_server.url)
    raw_server.answer = oversized_answer(framing)
    assert (await provider.send(make_message(), timeout_s=5)).outcome is Outcome.PERMANENT
    raw_server.answer = answer("202 Accepted", ACCEPTED)
    second = await provider.send(make_message(), timeout_s=5)
    assert (second.outcome, second.provider_message_id) == (Outcome.DELIVERED, "p-1")
