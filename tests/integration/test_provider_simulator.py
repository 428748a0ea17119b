"""Both provider clients (pyreqwest and aiohttp) against the real simulator over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from sms_dispatch.domain import Outcome
from sms_dispatch.ports import SmsProvider
from sms_dispatch.simulator import RunningSimulator, SimulatorConfig, start_simulator
from tests.integration.provider_clients import PROVIDER_AUTH_KEY, ProviderFactory, closed_port, make_message

TIMEOUT_S = 2.0
# The exception each client names in the error text.
CONNECT_ERROR = {"aiohttp": "ClientConnectorError", "pyreqwest": "ConnectError"}
RESET_ERROR = {
    "aiohttp": "ServerDisconnectedError",
    "pyreqwest": "ConnectError: connection error: error sending request",
}


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator that accepts only ``PROVIDER_AUTH_KEY``."""
    async with start_simulator(SimulatorConfig(auth_key=PROVIDER_AUTH_KEY, seed=1)) as running:
        yield running


@pytest.fixture
def provider(simulator: RunningSimulator, make_provider: ProviderFactory) -> SmsProvider:
    """The provider adapter pointed at the simulator with the right key."""
    return make_provider(simulator.url)


def with_faults(simulator: RunningSimulator, **knobs: object) -> None:
    """Turn on some of the simulator's knobs, keeping its auth key."""
    simulator.config = simulator.config.updated(knobs)


async def test_accepted_message_is_delivered_with_the_provider_id(
    provider: SmsProvider, simulator: RunningSimulator
) -> None:
    """A 202 with a messageId is DELIVERED with that id, the status and the raw body."""
    result = await provider.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.DELIVERED
    assert result.http_status == 202
    [received] = simulator.requests
    assert result.provider_message_id == received.provider_message_id
    assert result.raw_response is not None
    assert json.loads(result.raw_response) == {
        "message": "Accepted",
        "messageId": received.provider_message_id,
    }
    assert result.error is None


async def test_request_carries_exactly_to_and_content(
    provider: SmsProvider, simulator: RunningSimulator
) -> None:
    """The body is exactly ``{"to", "content"}`` as JSON, non-ASCII text included."""
    await provider.send(make_message(content="Merhaba dünya, şimdi"), timeout_s=TIMEOUT_S)

    [received] = simulator.requests
    assert json.loads(received.body) == {"to": "+905551111111", "content": "Merhaba dünya, şimdi"}


async def test_request_carries_auth_key_and_message_id_as_idempotency_key(
    provider: SmsProvider, simulator: RunningSimulator
) -> None:
    """The request sends JSON with x-ins-auth-key and the message id as Idempotency-Key."""
    message = make_message()

    await provider.send(message, timeout_s=TIMEOUT_S)

    [received] = simulator.requests
    assert received.content_type == "application/json"
    assert received.auth_key == PROVIDER_AUTH_KEY
    assert received.idempotency_key == str(message.id)


async def test_server_error_is_retryable(provider: SmsProvider, simulator: RunningSimulator) -> None:
    """A 500 answer is RETRYABLE and keeps the status."""
    with_faults(simulator, error_rate=1.0)

    result = await provider.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.RETRYABLE
    assert result.http_status == 500
    assert result.retry_after_s is None


async def test_rate_limit_is_retryable_after_the_given_seconds(
    provider: SmsProvider, simulator: RunningSimulator
) -> None:
    """A 429 with ``Retry-After: 7`` is RETRYABLE after 7 seconds."""
    with_faults(simulator, error_rate=1.0, error_status=429, retry_after_s=7)

    result = await provider.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.RETRYABLE
    assert result.http_status == 429
    assert result.retry_after_s == 7


async def test_hang_past_the_timeout_is_retryable(provider: SmsProvider, simulator: RunningSimulator) -> None:
    """A provider that does not answer within the timeout gives a RETRYABLE timeout."""
    with_faults(simulator, hang_rate=1.0)

    result = await provider.send(make_message(), timeout_s=0.3)

    assert result.outcome is Outcome.RETRYABLE
    assert result.error == "timed out after 0.3s"
    assert result.http_status is None


async def test_connection_reset_is_retryable(
    provider: SmsProvider, simulator: RunningSimulator, client_kind: str
) -> None:
    """A connection dropped without an answer is RETRYABLE, naming the error class."""
    with_faults(simulator, reset_rate=1.0)

    result = await provider.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.RETRYABLE
    assert result.error is not None
    assert RESET_ERROR[client_kind] in result.error


async def test_wrong_auth_key_is_permanent(
    make_provider: ProviderFactory, simulator: RunningSimulator
) -> None:
    """A 403 for a wrong key is PERMANENT: the provider rejected the message."""
    wrong = make_provider(simulator.url, auth_key="not-the-key")

    result = await wrong.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.PERMANENT
    assert result.http_status == 403
    assert result.error is not None
    assert result.error.startswith("provider rejected the message: HTTP 403")


async def test_bad_request_is_permanent(provider: SmsProvider, simulator: RunningSimulator) -> None:
    """A 400 is PERMANENT."""
    with_faults(simulator, error_rate=1.0, error_status=400)

    result = await provider.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.PERMANENT
    assert result.http_status == 400


async def test_accepted_without_message_id_is_permanent_and_keeps_the_body(
    provider: SmsProvider, simulator: RunningSimulator
) -> None:
    """A 202 whose body is not JSON is PERMANENT (not retried) and keeps the raw body."""
    with_faults(simulator, broken_body_rate=1.0)

    result = await provider.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.PERMANENT
    assert result.http_status == 202
    assert result.raw_response == "<html>Accepted"
    assert result.error is not None
    assert result.error.startswith("provider answered 202 but the body has no messageId")


async def test_slow_answer_within_the_timeout_is_delivered(
    provider: SmsProvider, simulator: RunningSimulator
) -> None:
    """An answer 200 ms late, within a 2 s timeout, is DELIVERED."""
    with_faults(simulator, latency_ms=200)

    result = await provider.send(make_message(), timeout_s=2.0)

    assert result.outcome is Outcome.DELIVERED


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rate": 1.0},
        {"error_rate": 1.0, "error_status": 401},
        {"reset_rate": 1.0},
        {"broken_body_rate": 1.0},
        {"hang_rate": 1.0},
    ],
)
async def test_error_text_never_contains_the_auth_key(
    provider: SmsProvider, simulator: RunningSimulator, knobs: dict[str, object]
) -> None:
    """No failure's error text or kept body reveals the auth key."""
    with_faults(simulator, **knobs)

    result = await provider.send(make_message(), timeout_s=0.3)

    assert result.error is not None
    assert PROVIDER_AUTH_KEY not in result.error
    assert PROVIDER_AUTH_KEY not in (result.raw_response or "")


async def test_closed_port_is_a_retryable_connection_error(
    make_provider: ProviderFactory, client_kind: str
) -> None:
    """A provider URL nobody listens on is RETRYABLE with the connection error named."""
    dead = make_provider(f"http://127.0.0.1:{closed_port()}/")

    result = await dead.send(make_message(), timeout_s=TIMEOUT_S)

    assert result.outcome is Outcome.RETRYABLE
    assert result.error is not None
    assert CONNECT_ERROR[client_kind] in result.error
    assert PROVIDER_AUTH_KEY not in result.error
