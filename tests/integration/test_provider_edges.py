"""Answers the simulator cannot give, from a raw HTTP server, against both provider clients.

Odd header bytes, a redirect, a cookie, proxy variables in the environment, a URL the client
cannot call: each must come back as a classified result (``send`` never raises), the same on
pyreqwest and on aiohttp.
"""

from __future__ import annotations

import contextlib

import pytest

from sms_dispatch.adapters.aiohttp_provider import AiohttpSmsProvider
from sms_dispatch.adapters.reqwest_provider import ReqwestSmsProvider
from sms_dispatch.bootstrap import open_provider
from sms_dispatch.config import Settings
from sms_dispatch.domain import Outcome
from tests.integration.provider_clients import (
    ACCEPTED,
    CLIENTS,
    ProviderFactory,
    RawServer,
    answer,
    closed_port,
    make_message,
)


async def test_bytes_outside_ascii_in_retry_after_are_no_retry_after(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 503 whose Retry-After holds bytes outside ASCII is RETRYABLE with no Retry-After."""
    raw_server.answer = answer("503 Service Unavailable", b"busy", b"Retry-After: \xff\xfe")
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class, result.retry_after_s) == (Outcome.RETRYABLE, "http_5xx", None)


async def test_odd_header_bytes_on_an_accepted_answer_do_not_undo_the_delivery(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 202 with a messageId is DELIVERED whatever other header bytes come with it (no resend)."""
    raw_server.answer = answer("202 Accepted", ACCEPTED, b"Retry-After: \xff", b"X-Odd: \xe9t\xe9")
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=2)
    assert (result.outcome, result.provider_message_id) == (Outcome.DELIVERED, "p-1")


async def test_a_redirect_is_not_followed(make_provider: ProviderFactory, raw_server: RawServer) -> None:
    """A 302 is PERMANENT ``http_3xx``: the message is not posted to another address."""
    raw_server.answer = answer("302 Found", b"", f"Location: {raw_server.url}elsewhere".encode())
    result = await make_provider(raw_server.url).send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class, result.http_status) == (Outcome.PERMANENT, "http_3xx", 302)
    assert len(raw_server.heads) == 1


async def test_cookies_from_the_provider_are_not_sent_back(
    make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A Set-Cookie on an answer does not come back on the next request."""
    raw_server.answer = answer("202 Accepted", ACCEPTED, b"Set-Cookie: lb=node-7; Path=/")
    # By name: a cookie jar that keeps cookies at all keeps none for a bare IP address.
    provider = make_provider(raw_server.url.replace("127.0.0.1", "localhost"))
    for _ in range(2):
        assert (await provider.send(make_message(), timeout_s=2)).outcome is Outcome.DELIVERED
    assert len(raw_server.heads) == 2
    assert b"cookie:" not in raw_server.heads[1].lower()


@pytest.mark.parametrize("client", CLIENTS)
async def test_proxy_variables_are_ignored(
    monkeypatch: pytest.MonkeyPatch, raw_server: RawServer, client: str
) -> None:
    """With HTTP(S)_PROXY pointing nowhere, the provider is still called directly.

    The client is built after the variables are set, as a service started with them would be.
    """
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None, PROVIDER_HTTP_CLIENT=client)  # type: ignore[call-arg]
    raw_server.answer = answer("202 Accepted", ACCEPTED)
    async with contextlib.AsyncExitStack() as stack:
        result = await open_provider(settings, raw_server.url, stack).send(make_message(), timeout_s=2)
    assert result.outcome is Outcome.DELIVERED
    assert len(raw_server.heads) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://", "not a url"])
async def test_a_url_the_client_cannot_call_is_a_classified_result(
    make_provider: ProviderFactory, url: str
) -> None:
    """A bad provider URL (startup refuses one; this is the adapter's own guard) never raises."""
    result = await make_provider(url).send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class) == (Outcome.RETRYABLE, "connection")


@pytest.mark.parametrize(
    ("client", "adapter"), [("pyreqwest", ReqwestSmsProvider), ("aiohttp", AiohttpSmsProvider)]
)
async def test_provider_http_client_picks_the_client_the_service_sends_with(
    raw_server: RawServer, client: str, adapter: type
) -> None:
    """``PROVIDER_HTTP_CLIENT`` picks the adapter the composition root wires, and it sends the key."""
    settings = Settings(_env_file=None, PROVIDER_HTTP_CLIENT=client, SMS_PROVIDER_KEY="key-123")  # type: ignore[call-arg]
    raw_server.answer = answer("202 Accepted", ACCEPTED)
    async with contextlib.AsyncExitStack() as stack:
        provider = open_provider(settings, raw_server.url, stack)
        assert isinstance(provider, adapter)
        assert (await provider.send(make_message(), timeout_s=2)).outcome is Outcome.DELIVERED
    assert b"x-ins-auth-key: key-123\r\n" in raw_server.heads[0].lower()
