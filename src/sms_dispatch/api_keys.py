"""API keys and their scopes, as ``API_KEYS`` writes them. No framework, no I/O.

Format: comma-separated ``KEY:SCOPE`` entries, for example
``API_KEYS=k3y-for-the-ops-team:operate,k3y-for-grafana:read``. A scope is ``read`` (look at
messages and the scheduler) or ``operate`` (everything ``read`` allows, plus start/stop, create,
retry and cancel). A key is any run of printable characters without blanks or commas; the last
``:`` in an entry separates it from its scope.
"""

from __future__ import annotations

import enum

SHORT_KEY_LENGTH = 16
"""Keys shorter than this are accepted but warned about at start-up: they are easy to guess."""


class Scope(enum.StrEnum):
    """What a key may do; ``operate`` includes ``read``."""

    READ = "read"
    OPERATE = "operate"

    def allows(self, needed: Scope) -> bool:
        """Return True when a key with this scope may do what ``needed`` guards."""
        return self is Scope.OPERATE or needed is Scope.READ


def parse_api_keys(raw: str) -> dict[str, Scope]:
    """Return ``{key: scope}`` from an ``API_KEYS`` value; raise ``ValueError`` saying what is wrong."""
    keys: dict[str, Scope] = {}
    for position, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        if not entry:
            raise ValueError(f"entry {position} is empty; expected KEY:SCOPE entries separated by commas")
        key, colon, scope = entry.rpartition(":")
        if not colon or not key:
            raise ValueError(f"entry {position} is not KEY:SCOPE (e.g. my-long-key:operate)")
        if scope not in Scope.__members__.values():
            raise ValueError(f"entry {position} has scope {scope!r}; expected read or operate")
        if any(char.isspace() or not char.isprintable() for char in key):
            raise ValueError(f"entry {position}: a key must not contain blanks or control characters")
        if key in keys:
            raise ValueError(f"entry {position} repeats a key given earlier")
        keys[key] = Scope(scope)
    return keys
