"""RFC 3339 times as the API reads them: always with a zone, always returned in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# RFC 3339 with its zone; a space where the offset's sign goes is a '+' that an unencoded
# query string turned into a space. Fractions beyond microseconds (Go's RFC3339Nano) are cut.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>[Zz]|[+\- ]\d{2}:\d{2})"
)
_RFC3339_HINT = (
    "must be an RFC 3339 time with its zone, e.g. 2026-01-01T12:00:00Z or 2026-01-01T15:00:00+03:00"
)


def parse_rfc3339(value: object) -> object:
    """Return an RFC 3339 text as an aware UTC datetime; raise ``ValueError`` for anything else."""
    if not isinstance(value, str):
        return value
    found = _RFC3339.fullmatch(value.strip())
    if found is None:
        raise ValueError(_RFC3339_HINT)
    zone = found["zone"].upper().replace(" ", "+").replace("Z", "+00:00")
    fraction = f".{found['fraction'][:6]:0<6}" if found["fraction"] else ""
    try:
        parsed = datetime.fromisoformat(f"{found['date']}T{found['time']}{fraction}{zone}")
    except ValueError:
        raise ValueError(_RFC3339_HINT) from None
    return parsed.astimezone(UTC)
