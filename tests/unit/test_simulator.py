"""The provider simulator, driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sms_dispatch.simulator import RunningSimulator, SimulatorConfig, start_simulator

MESSAGE = {"to": "+905551111111", "content": "Insider - Project"}


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A simulator with default knobs on an ephemeral port."""
    async with start_simulator() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


def control(simulator: RunningSimulator, path: str) -> str:
    """Return the URL of a control endpoint."""
    return f"{simulator.url}_sim/{path}"


async def test_binding_port_zero_reports_the_real_port(simulator: RunningSimulator) -> None:
    """Port 0 binds an ephemeral port, and the URL names it."""
    port = int(simulator.url.rsplit(":", 1)[1].strip("/"))

    assert simulator.url.startswith("http://127.0.0.1:")
    assert port > 0


async def test_message_is_accepted_like_webhook_site(
    simulator: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """A valid POST on any path gets 202 with ``Accepted`` and a messageId."""
    async with http.post(f"{simulator.url}any/path", json=MESSAGE) as response:
        body = await response.json()

    assert response.status == 202
    assert body["message"] == "Accepted"
    assert len(body["messageId"]) == 36


@pytest.mark.parametrize(
    ("payload", "fault"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'{"content": "hi"}', "to must be a string"),
        (b'{"to": "+905551111111", "content": 5}', "content must be a string"),
    ],
)
async def test_bad_body_gets_400_saying_what_is_wrong(
    simulator: RunningSimulator, http: aiohttp.ClientSession, payload: bytes, fault: str
) -> None:
    """A body that is not ``{"to": str, "content": str}`` gets a 400 naming the fault."""
    async with http.post(simulator.url, data=payload) as response:
        body = await response.json()

    assert response.status == 400
    assert body["error"] == fault


async def test_wrong_auth_key_gets_403(http: aiohttp.ClientSession) -> None:
    """With an auth key configured, a request with another key gets a JSON 403."""
    async with start_simulator(SimulatorConfig(auth_key="right")) as simulator:
        headers = {"x-ins-auth-key": "wrong"}
        async with http.post(simulator.url, json=MESSAGE, headers=headers) as response:
            body = await response.json()

    assert response.status == 403
    assert "x-ins-auth-key" in body["error"]


async def test_error_answer_carries_retry_after(http: aiohttp.ClientSession) -> None:
    """An error answer sends the configured status and Retry-After header."""
    config = SimulatorConfig(error_rate=1.0, error_status=429, retry_after_s=7)
    async with (
        start_simulator(config) as simulator,
        http.post(simulator.url, json=MESSAGE) as response,
    ):
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"


async def test_put_config_changes_behaviour(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """``PUT /_sim/config`` changes the knobs the next request is answered with."""
    async with http.put(control(simulator, "config"), json={"error_rate": 1.0}) as response:
        assert response.status == 200
        assert (await response.json())["error_rate"] == 1.0

    async with http.post(simulator.url, json=MESSAGE) as response:
        assert response.status == 500
    assert simulator.config.error_rate == 1.0


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"error_rate": 1.5}, "error_rate must be a number from 0 to 1"),
        ({"error_rate": "high"}, "error_rate must be a number from 0 to 1"),
        ({"error_rate": 0.6, "hang_rate": 0.6}, "must not exceed 1"),
        ({"error_status": 200}, "error_status must be an integer from 400 to 599"),
        ({"latency_ms": -1}, "latency_ms must be a number >= 0"),
        ({"loudness": 11}, "unknown knobs: loudness"),
    ],
)
async def test_put_config_rejects_bad_values(
    simulator: RunningSimulator,
    http: aiohttp.ClientSession,
    changes: dict[str, object],
    fault: str,
) -> None:
    """``PUT /_sim/config`` answers 400 naming the bad knob and keeps the old knobs."""
    async with http.put(control(simulator, "config"), json=changes) as response:
        body = await response.json()

    assert response.status == 400
    assert fault in body["error"]
    assert simulator.config == SimulatorConfig()


async def test_get_config_shows_the_knobs(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """``GET /_sim/config`` returns every knob in force."""
    async with http.get(control(simulator, "config")) as response:
        body = await response.json()

    assert body == SimulatorConfig().to_dict()


async def test_requests_are_recorded_and_cleared(
    simulator: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Every POST is recorded with its headers and answer, and DELETE clears the record."""
    headers = {"Idempotency-Key": "k-1", "x-ins-auth-key": "key"}
    async with http.post(simulator.url, json=MESSAGE, headers=headers):
        pass
    async with http.post(simulator.url, data=b"oops"):
        pass

    async with http.get(control(simulator, "requests")) as response:
        recorded = await response.json()
    async with http.delete(control(simulator, "requests")) as response:
        assert response.status == 200

    assert [(r["to"], r["idempotency_key"], r["auth_key"], r["status"]) for r in recorded] == [
        ("+905551111111", "k-1", "key", 202),
        (None, None, None, 400),
    ]
    assert recorded[0]["provider_message_id"] is not None
    assert simulator.requests == []


async def test_health_answers_ok(simulator: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """``GET /_sim/health`` answers ok."""
    async with http.get(control(simulator, "health")) as response:
        assert await response.json() == {"status": "ok"}


async def test_seeded_faults_repeat(http: aiohttp.ClientSession) -> None:
    """The same seed gives the same sequence of faults."""
    config = SimulatorConfig(error_rate=0.5, seed=42)
    runs = []
    for _ in range(2):
        async with start_simulator(config) as simulator:
            for _ in range(20):
                async with http.post(simulator.url, json=MESSAGE):
                    pass
            runs.append([r.status for r in simulator.requests])

    assert runs[0] == runs[1]
    assert {202, 500} == set(runs[0])


async def test_stopping_drops_a_hanging_request(http: aiohttp.ClientSession) -> None:
    """Stopping the simulator disconnects a client still waiting on a hang."""
    async with start_simulator(SimulatorConfig(hang_rate=1.0, hang_s=30)) as simulator:
        waiting = asyncio.create_task(http.post(simulator.url, json=MESSAGE))
        while not simulator.requests:
            await asyncio.sleep(0.01)

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await waiting
    assert [r.fate for r in simulator.requests] == ["hang"]
