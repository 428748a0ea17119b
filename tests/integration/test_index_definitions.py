"""Every index the migrations build is the one ``tables.py`` declares, its condition included.

Alembic's comparison of a database with ``tables.metadata`` (``test_migrations.py``) looks at an
index's name, columns and uniqueness, not at its ``WHERE``: a partial index declared in
``tables.py`` and built whole by a migration (or the other way round) would pass it. Here the
database itself writes out both: the migrated schema, and the schema ``metadata.create_all``
builds beside it (another SQLite file; another schema of the same PostgreSQL database).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.database import create_engine
from sms_dispatch.adapters.tables import metadata
from tests.schema_helpers import index_definitions

DECLARED = "declared"


async def test_migrated_indexes_are_the_declared_ones(engine: AsyncEngine, tmp_path: Path) -> None:
    """Same names, columns, order, uniqueness and conditions, on SQLite and PostgreSQL."""
    tables = set(metadata.tables)
    async with engine.connect() as connection:
        migrated = await index_definitions(connection, "public")
    if engine.dialect.name == "postgresql":
        async with engine.begin() as connection:
            await connection.execute(text(f"CREATE SCHEMA {DECLARED}"))
            declared_in = await connection.execution_options(schema_translate_map={None: DECLARED})
            await declared_in.run_sync(metadata.create_all)
        async with engine.connect() as connection:
            declared = await index_definitions(connection, DECLARED)
    else:
        other = create_engine(
            URL.create("sqlite+aiosqlite", database=str(tmp_path / "declared.db")), pool_size=1
        )
        try:
            async with other.begin() as connection:
                await connection.run_sync(metadata.create_all)
            async with other.connect() as connection:
                declared = await index_definitions(connection, "main")
        finally:
            await other.dispose()
    on_our_tables = {
        name: sql for name, sql in migrated.items() if any(f" ON {table} " in sql for table in tables)
    }
    assert declared, "metadata.create_all built no index"
    assert on_our_tables == declared
