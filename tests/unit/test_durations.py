"""Go-style duration parsing."""

from __future__ import annotations

import pytest

from sms_dispatch.durations import format_duration, parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2m", 120.0),
        ("10s", 10.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("30d", 2_592_000.0),
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    """Each Go duration form becomes the right number of seconds."""
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10", "5 m", "-1s", "2x", "1m foo"])
def test_rejects_what_go_rejects(text: str) -> None:
    """Unitless numbers, unknown units and negatives are refused with the expected form named."""
    with pytest.raises(ValueError, match="Go duration"):
        parse_duration_s(text)


def test_formats_back_to_short_form() -> None:
    """Seconds print as a short duration."""
    assert [format_duration(s) for s in (120, 0.5, 5400, 0, 61)] == ["2m", "500ms", "1h30m", "0s", "1m1s"]
