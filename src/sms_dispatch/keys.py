"""The one place that builds every Redis key, and the values those keys hold."""

from __future__ import annotations

import math
from datetime import UTC, datetime

SENT_MESSAGE_PREFIX = "sent_messages:"


def sent_message_key(provider_message_id: str) -> str:
    """Return the key caching one sent message: ``sent_messages:<provider message id>``."""
    return SENT_MESSAGE_PREFIX + provider_message_id


def sent_message_value(sent_at: datetime) -> str:
    """Return the cached send time: RFC 3339 in UTC, e.g. ``2026-01-01T12:00:00.123456Z``."""
    if sent_at.tzinfo is None:
        raise ValueError("sent_at must be timezone-aware")
    return sent_at.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"


def sent_message_ttl_s(ttl_s: float) -> int:
    """Return the expiry a sent-message key gets: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(ttl_s))
