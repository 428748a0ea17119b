"""The error class WebhookSmsProvider gives each fault, against the real simulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from sms_dispatch.adapters.webhook_provider import WebhookSmsProvider, create_provider_session
from sms_dispatch.domain import Outcome
from sms_dispatch.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.integration.test_webhook_provider import AUTH_KEY, closed_port, make_message


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator that accepts only ``AUTH_KEY``."""
    async with start_simulator(SimulatorConfig(auth_key=AUTH_KEY, seed=1, hang_s=5)) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The pooled provider session, closed after the test."""
    client_session = create_provider_session(max_connections=4)
    yield client_session
    await client_session.close()


@pytest.mark.parametrize(
    ("knobs", "outcome", "error_class"),
    [
        ({}, Outcome.DELIVERED, None),
        ({"error_rate": 1.0}, Outcome.RETRYABLE, "http_5xx"),
        ({"error_rate": 1.0, "error_status": 429, "retry_after_s": 1}, Outcome.RETRYABLE, "http_429"),
        ({"error_rate": 1.0, "error_status": 408}, Outcome.RETRYABLE, "http_4xx"),
        ({"error_rate": 1.0, "error_status": 400}, Outcome.PERMANENT, "http_4xx"),
        ({"broken_body_rate": 1.0}, Outcome.PERMANENT, "bad_response"),
        ({"hang_rate": 1.0}, Outcome.RETRYABLE, "timeout"),
        ({"reset_rate": 1.0}, Outcome.RETRYABLE, "connection"),
    ],
)
async def test_each_fault_has_its_error_class(
    simulator: RunningSimulator,
    session: aiohttp.ClientSession,
    knobs: dict[str, object],
    outcome: Outcome,
    error_class: str | None,
) -> None:
    """Each simulated fault is classified with the outcome and error class the module table says."""
    simulator.config = simulator.config.updated(knobs)
    provider = WebhookSmsProvider(session, url=simulator.url, auth_key=AUTH_KEY)
    result = await provider.send(make_message(), timeout_s=0.5)
    assert (result.outcome, result.error_class) == (outcome, error_class)


async def test_a_closed_port_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    """Nothing listening is classed as a connection error."""
    provider = WebhookSmsProvider(session, url=f"http://127.0.0.1:{closed_port()}/", auth_key=AUTH_KEY)
    result = await provider.send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class) == (Outcome.RETRYABLE, "connection")


async def test_a_wrong_auth_key_is_a_client_error(
    simulator: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    """A refused key (401/403) is classed http_4xx."""
    provider = WebhookSmsProvider(session, url=simulator.url, auth_key="wrong-key")
    result = await provider.send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class) == (Outcome.PERMANENT, "http_4xx")
