"""The API on the Go service's rules: every message the Go service would send is accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings


@asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The real app over services on ``database_url``, dispatcher not running."""
    configured = Settings(DATABASE_URL=database_url, SEED_ON_FIRST_RUN=0, **settings)
    async with bootstrap(configured, run_dispatcher=False) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield services, client


async def test_a_go_seed_message_is_accepted(tmp_path: Path) -> None:
    """A +905 number of the Go seed that is no valid number, with 255 characters, is queued."""
    async with served(f"sqlite:///{tmp_path / 'rules.db'}") as (_, client):
        response = await client.post("/messages", json={"to": "+905001234567", "content": "é" * 255})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["to"] == "+905001234567"
