"""Fixtures of the integration tests: the same test on SQLite and PostgreSQL, on both HTTP clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.aiohttp_provider import AiohttpSmsProvider, create_aiohttp_session
from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.reqwest_provider import ReqwestSmsProvider, create_reqwest_client
from sms_dispatch.ports import SmsProvider
from tests.integration.provider_clients import CLIENTS, PROVIDER_AUTH_KEY, ProviderFactory, RawServer


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL:
    """A SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return URL.create("sqlite+aiosqlite", database=str(tmp_path / "test.db"))
    return make_url(request.getfixturevalue("pg_url")).set(drivername="postgresql+asyncpg")


@pytest.fixture
async def engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on each database."""
    created = create_engine(database_url, pool_size=4)
    await migrate(created)
    yield created
    await created.dispose()


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    """Each test runs once per HTTP client."""
    return str(request.param)


@pytest.fixture
async def make_provider(client_kind: str) -> AsyncIterator[ProviderFactory]:
    """Build providers on one pooled client of ``client_kind``, closed after the test."""
    make: ProviderFactory
    if client_kind == "aiohttp":
        session = create_aiohttp_session(max_connections=8)

        def make(url: str, auth_key: str = PROVIDER_AUTH_KEY) -> SmsProvider:
            return AiohttpSmsProvider(session, url=url, auth_key=auth_key)

        yield make
        await session.close()
        return
    client = create_reqwest_client(max_connections=8)

    def make(url: str, auth_key: str = PROVIDER_AUTH_KEY) -> SmsProvider:
        return ReqwestSmsProvider(client, url=url, auth_key=auth_key)

    yield make
    await client.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """A raw HTTP server on 127.0.0.1 for answers the simulator cannot give."""
    raw = RawServer()
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server:
        yield raw
        server.close()
