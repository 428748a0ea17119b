"""Validation rules and backoff."""

from __future__ import annotations

import random

import pytest

from sms_dispatch.domain import backoff_delay_s, validate_message
from sms_dispatch.errors import InvalidInput


def test_normalises_recipient_to_e164() -> None:
    """Spaces and dashes go; the number comes back in E.164."""
    assert validate_message("+90 555 111-11-11", "hi", 160).to == "+905551111111"


def test_counts_characters_not_bytes() -> None:
    """A Turkish letter is one character: 160 of them fit in a 160 limit."""
    assert validate_message("+905551111111", "ş" * 160, 160).content == "ş" * 160


def test_rejects_over_length_content() -> None:
    """Content over the limit is refused, saying the length and the limit."""
    with pytest.raises(InvalidInput, match="161 characters long; the limit is 160"):
        validate_message("+905551111111", "a" * 161, 160)


def test_lists_every_faulty_field() -> None:
    """A bad number and empty content are both reported."""
    with pytest.raises(InvalidInput) as caught:
        validate_message("12345", "   ", 160)
    assert set(caught.value.fields) == {"to", "content"}
    assert "international format" in caught.value.fields["to"]
    assert caught.value.fields["content"] == "must not be empty"


@pytest.mark.parametrize("number", ["+90", "+9055511", "+99912345678", "hello"])
def test_rejects_invalid_numbers(number: str) -> None:
    """Numbers no country has (too short, no country code, not a number) are refused."""
    with pytest.raises(InvalidInput):
        validate_message(number, "hi", 160)


def test_content_is_trimmed() -> None:
    """Surrounding whitespace is removed."""
    assert validate_message("+905551111111", "  hi \n", 160).content == "hi"


def test_backoff_grows_and_is_capped() -> None:
    """Each attempt waits about twice as long, never above the cap."""
    rng = random.Random(1)
    delays = [backoff_delay_s(n, base_s=1, max_delay_s=10, rng=rng) for n in range(1, 7)]
    assert 0.5 <= delays[0] <= 1
    assert 2 <= delays[2] <= 4
    assert all(d <= 10 for d in delays)
    assert delays[-1] >= 5


def test_backoff_honours_retry_after_clamped() -> None:
    """Retry-After wins over the exponential delay, clamped to the cap."""
    assert backoff_delay_s(1, base_s=1, max_delay_s=10, retry_after_s=7) == 7
    assert backoff_delay_s(1, base_s=1, max_delay_s=10, retry_after_s=3600) == 10


def test_rejects_content_holding_nul() -> None:
    """Content with a NUL is refused, naming the character: no store can keep it as sent."""
    with pytest.raises(InvalidInput) as caught:
        validate_message("+905551111111", "a\x00b", 160)
    assert caught.value.fields["content"] == "must not contain the NUL character (U+0000)"
