"""GET /stats and the dashboard's files, over the real app on a SQLite file."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """Services on a fresh SQLite file with the built-in simulator, dispatcher not running."""
    settings = Settings(SQLITE_PATH=tmp_path / "dash.db", SEED_ON_FIRST_RUN=0, MESSAGE_BATCH_SIZE=2)
    async with bootstrap(settings, run_dispatcher=False) as built:
        yield built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def stats(client: httpx.AsyncClient) -> dict[str, object]:
    """Return GET /stats's data."""
    response = await client.get("/stats")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


async def test_stats_of_an_empty_queue(client: httpx.AsyncClient) -> None:
    """An empty queue: every status counted zero, no lag, nothing sent, the scheduler running."""
    data = await stats(client)
    assert data["counts"] == {"PENDING": 0, "SENDING": 0, "SUCCESS": 0, "FAILED": 0, "CANCELLED": 0}
    assert (data["total"], data["lagSeconds"], data["oldestDueAt"]) == (0, 0.0, None)
    assert (data["sentLastMinute"], data["sentLast5Minutes"]) == (0, 0)
    assert isinstance(data["scheduler"], dict) and data["scheduler"]["running"] is True


async def test_stats_count_a_batch_just_sent(client: httpx.AsyncClient, services: Services) -> None:
    """After one batch of 2 out of 3 messages: 2 sent in the last minute and 5 minutes, 1 pending."""
    for n in range(3):
        assert (await client.post("/messages", json={"to": "+905551111111", "content": f"m{n}"})).is_success
    await services.dispatcher.run_once()
    data = await stats(client)
    assert data["counts"] == {"PENDING": 1, "SENDING": 0, "SUCCESS": 2, "FAILED": 0, "CANCELLED": 0}
    assert (data["sentLastMinute"], data["sentLast5Minutes"], data["total"]) == (2, 2, 3)


async def test_stats_lag_is_the_age_of_the_oldest_due_message(client: httpx.AsyncClient) -> None:
    """oldestDueAt is the first pending message's due time; lagSeconds is how long ago that was."""
    first = (await client.post("/messages", json={"to": "+905551111111", "content": "first"})).json()["data"]
    await client.post("/messages", json={"to": "+905551111111", "content": "second"})
    data = await stats(client)
    assert isinstance(data["oldestDueAt"], str) and isinstance(data["measuredAt"], str)
    assert datetime.fromisoformat(data["oldestDueAt"]) == datetime.fromisoformat(first["createdAt"])
    waited_s = datetime.fromisoformat(data["measuredAt"]) - datetime.fromisoformat(first["createdAt"])
    assert data["lagSeconds"] == pytest.approx(waited_s.total_seconds(), abs=0.002)


async def test_dashboard_page_allows_only_its_own_origin(client: httpx.AsyncClient) -> None:
    """/dashboard is HTML whose Content-Security-Policy forbids every other host."""
    response = await client.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http" not in policy


async def test_dashboard_references_only_packaged_files(client: httpx.AsyncClient) -> None:
    """Every script and style sheet the page names is served by the service, with its type."""
    page = (await client.get("/dashboard/")).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"/dashboard/app.js", "/dashboard/style.css"} <= set(assets)
    for asset in assets:
        if asset.startswith("data:") or asset == "/swagger/":
            continue
        assert asset.startswith("/"), f"{asset} is not on this service"
        response = await client.get(asset)
        assert response.status_code == 200, asset
        expected = "text/javascript" if asset.endswith(".js") else "text/css"
        assert response.headers["content-type"].startswith(expected)
