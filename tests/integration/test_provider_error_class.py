"""The error class each provider client gives each fault, against the real simulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sms_dispatch.domain import Outcome
from sms_dispatch.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.integration.provider_clients import PROVIDER_AUTH_KEY, ProviderFactory, closed_port, make_message


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator that accepts only ``PROVIDER_AUTH_KEY``."""
    async with start_simulator(SimulatorConfig(auth_key=PROVIDER_AUTH_KEY, seed=1, hang_s=5)) as running:
        yield running


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
    make_provider: ProviderFactory,
    knobs: dict[str, object],
    outcome: Outcome,
    error_class: str | None,
) -> None:
    """Each simulated fault is classified with the outcome and error class the module table says."""
    simulator.config = simulator.config.updated(knobs)
    provider = make_provider(simulator.url)
    result = await provider.send(make_message(), timeout_s=0.5)
    assert (result.outcome, result.error_class) == (outcome, error_class)


async def test_a_closed_port_is_a_connection_error(make_provider: ProviderFactory) -> None:
    """Nothing listening is classed as a connection error."""
    provider = make_provider(f"http://127.0.0.1:{closed_port()}/")
    result = await provider.send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class) == (Outcome.RETRYABLE, "connection")


async def test_a_wrong_auth_key_is_a_client_error(
    simulator: RunningSimulator, make_provider: ProviderFactory
) -> None:
    """A refused key (401/403) is classed http_4xx."""
    provider = make_provider(simulator.url, auth_key="wrong-key")
    result = await provider.send(make_message(), timeout_s=2)
    assert (result.outcome, result.error_class) == (Outcome.PERMANENT, "http_4xx")
