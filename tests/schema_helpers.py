"""Moving a test database's schema to a given migration, and reading its indexes back."""

from __future__ import annotations

import re

from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection

from sms_dispatch.adapters.database import alembic_config


def migrate_to(connection: Connection, revision: str, *, down: bool = False) -> None:
    """Upgrade (or with ``down``, downgrade) the schema on ``connection`` to ``revision``.

    For ``await async_connection.run_sync(migrate_to, "0007")``.
    """
    config = alembic_config()
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


async def index_definitions(connection: AsyncConnection, schema: str) -> dict[str, str]:
    """Each index's definition as the database writes it out, by name, without the schema name.

    PostgreSQL: ``pg_indexes.indexdef`` of ``schema``; SQLite: ``sqlite_master.sql`` (quotes
    and runs of whitespace dropped; ``schema`` is not used).
    """
    if connection.dialect.name == "postgresql":
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :schema"
        rows = (await connection.execute(text(sql), {"schema": schema})).all()
        return {name: sql.replace(f" {schema}.", " ") for name, sql in rows}
    sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    rows = (await connection.execute(text(sql))).all()
    return {name: re.sub(r"\s+", " ", sql.replace('"', "")).strip() for name, sql in rows}
