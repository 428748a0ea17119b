"""Alembic environment: runs on the connection that ``adapters.database.migrate`` hands over.

Online mode only. The connection arrives in ``config.attributes["connection"]``, already
inside the transaction (and, on PostgreSQL, the advisory lock) that ``migrate`` holds.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from sms_dispatch.adapters.tables import metadata


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; use `sms-dispatch migrate`")
_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError(
        "run migrations through sms_dispatch.adapters.database.migrate(engine), "
        "which passes its connection in config.attributes['connection']"
    )
run_migrations(_connection)
