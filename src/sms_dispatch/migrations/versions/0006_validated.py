"""Check a message once: on the way in, not again before every send.

Messages created through the service (API, CLI) are checked and normalised when they come in;
``validated`` marks them so the dispatcher does not parse the recipient again before each send.
Rows inserted by other programs with plain SQL get ``false`` and are checked before their first
send, as before. A trigger clears the mark when a row's recipient or content is changed by
hand, so an edited row is checked again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION sms_dispatch_unvalidate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.validated := false;
    RETURN NEW;
END
$$
"""
_CHANGED = 'OLD."to" IS DISTINCT FROM NEW."to" OR OLD.content IS DISTINCT FROM NEW.content'
# SQLite has no BEFORE-trigger assignment: an AFTER trigger updates the row (it sets neither
# column, so it does not fire itself again).
_SQLITE_TRIGGER = """
CREATE TRIGGER messages_unvalidate AFTER UPDATE OF "to", content ON messages
FOR EACH ROW WHEN (OLD."to" IS NOT NEW."to" OR OLD.content IS NOT NEW.content) AND NEW.validated
BEGIN
    UPDATE messages SET validated = 0 WHERE id = NEW.id;
END
"""


def upgrade() -> None:
    """Add ``messages.validated`` and the trigger that clears it on a hand edit."""
    # A plain ADD COLUMN, not a batch: a batch rebuilds the table on SQLite and would drop the
    # count triggers of migration 0003.
    column: sa.Column[bool] = sa.Column(
        "validated", sa.Boolean(), nullable=False, server_default=sa.text("false")
    )
    op.add_column("messages", column)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            'CREATE TRIGGER messages_unvalidate BEFORE UPDATE OF "to", content ON messages'
            f" FOR EACH ROW WHEN ({_CHANGED}) EXECUTE FUNCTION sms_dispatch_unvalidate()"
        )
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    """Drop the trigger and the column."""
    op.execute("DROP TRIGGER IF EXISTS messages_unvalidate" + (" ON messages" if _pg() else ""))
    if _pg():
        op.execute("DROP FUNCTION IF EXISTS sms_dispatch_unvalidate()")
    op.drop_column("messages", "validated")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
