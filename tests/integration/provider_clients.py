"""Names shared by the provider tests; their fixtures (``client_kind``, ``make_provider``) are in conftest."""

from __future__ import annotations

from collections.abc import Callable

from sms_dispatch.ports import SmsProvider

CLIENTS = ["pyreqwest", "aiohttp"]
"""The HTTP clients ``PROVIDER_HTTP_CLIENT`` offers: each provider test runs on both."""

PROVIDER_AUTH_KEY = "INS.me1x9uMcyYGlhKKQVPoc.bO3j9aZwRTOcA2Ywo"
"""The key the provider tests' simulators accept."""

ProviderFactory = Callable[..., SmsProvider]
"""``make_provider(url, auth_key=PROVIDER_AUTH_KEY)``: a provider on the test's client."""
