"""Go-style durations (``2m``, ``10s``, ``500ms``, ``1h30m``) plus ``d`` for days."""

from __future__ import annotations

import re

_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
EXPECTED = "a Go duration such as 2m, 10s, 500ms or 1h30m"


def parse_duration_s(text: str) -> float:
    """Return the number of seconds in ``text``; raise ``ValueError`` naming the expected form."""
    raw = text.strip()
    if raw == "0":
        return 0.0
    if raw.startswith("-"):
        raise ValueError(f"{raw!r} is negative; expected {EXPECTED}")
    pos, total = 0, 0.0
    while pos < len(raw):
        match = _PART.match(raw, pos)
        if match is None:
            raise ValueError(f"{raw!r} is not {EXPECTED}")
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"{raw!r} is not {EXPECTED}")
    return total


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as a short Go-style duration (``2m0s`` becomes ``2m``)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)
