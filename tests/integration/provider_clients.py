"""Names and helpers shared by the provider tests (their fixtures are in conftest)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sms_dispatch.domain import Message, Status
from sms_dispatch.ports import SmsProvider

CLIENTS = ["pyreqwest", "aiohttp"]
"""The HTTP clients ``PROVIDER_HTTP_CLIENT`` offers: each provider test runs on both."""

PROVIDER_AUTH_KEY = "INS.me1x9uMcyYGlhKKQVPoc.bO3j9aZwRTOcA2Ywo"
"""The key the provider tests' simulators accept."""

ProviderFactory = Callable[..., SmsProvider]
"""``make_provider(url, auth_key=PROVIDER_AUTH_KEY)``: a provider on the test's client."""


def make_message(to: str = "+905551111111", content: str = "Insider - Project") -> Message:
    """Build a claimed message as the core hands it to the provider."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    return Message(
        id=uuid.uuid4(),
        to=to,
        content=content,
        status=Status.SENDING,
        attempts=1,
        created_at=now,
        updated_at=now,
    )


def closed_port() -> int:
    """Return a local port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
