"""Fixtures of the integration tests that run the same test on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine, migrate


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
