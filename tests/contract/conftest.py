"""Fixtures of the store contract: every kind of store, and SQL databases shared by two instances.

Every contract module here (store, listing, send budget) runs against the same stores: in-memory,
SQLite and PostgreSQL, so the in-memory fake cannot drift from what the SQL store does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine
from tests.contract.store_helpers import (
    POSTGRES,
    Subject,
    async_pg_url,
    migrated_engine,
    open_subject,
    sqlite_url,
)


def _url_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> URL | None:
    if kind == "memory":
        return None
    if kind == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    return async_pg_url(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL | None:
    """Each kind of store's database: none (in-memory), a SQLite file, a fresh PostgreSQL."""
    return _url_of(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", POSTGRES])
def sql_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> URL | None:
    """Each SQL database: a SQLite file, a fresh PostgreSQL."""
    return _url_of(request.param, request, tmp_path)


@pytest.fixture
async def subject(database_url: URL | None) -> AsyncIterator[Subject]:
    """A fresh, empty store of each kind."""
    async with open_subject(database_url) as opened:
        yield opened


@pytest.fixture
async def sql_engine(sql_database_url: URL) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on each SQL database."""
    engine = await migrated_engine(sql_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def two_engines(sql_engine: AsyncEngine) -> AsyncIterator[list[AsyncEngine]]:
    """Two engines (two connection pools, as two instances have) on one migrated database."""
    second = create_engine(sql_engine.url, pool_size=4)
    yield [sql_engine, second]
    await second.dispose()


@pytest.fixture
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on a fresh PostgreSQL database."""
    engine = await migrated_engine(async_pg_url(pg_url))
    yield engine
    await engine.dispose()
