"""Instant pickup and the fleet's send budget.

On PostgreSQL a statement-level trigger on ``messages`` runs ``pg_notify('sms_dispatch_new', '')``
after every INSERT, and a row trigger does the same when an UPDATE puts a row back to PENDING
(an operator's retry, a hand-back): a continuous dispatcher that LISTENs on that channel wakes at once instead of
waiting for its next poll. One notification per statement, not per row, and PostgreSQL folds
identical notifications of one transaction into one, so a bulk insert costs one wake-up. A
change of the fleet-wide switch (``scheduler_state.running``) notifies too, with the payload
``switch``.
SQLite has no notifications: the dispatcher polls there.

``scheduler_state.paced_until`` holds the fleet-wide send budget of ``MESSAGE_RATE_LIMIT``:
the time up to which the sends granted so far are paid for at that rate.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sms_dispatch.adapters.tables import UtcDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "sms_dispatch_new"

_FUNCTION = f"""
CREATE OR REPLACE FUNCTION sms_dispatch_notify_new() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$
"""

# Rows going back to PENDING (an operator's retry, a hand-back, a retry after backoff) notify
# too. A row-level trigger whose WHEN clause is false never calls the function nor queues an
# event, so the hot claims (PENDING -> SENDING) and finishes (-> SUCCESS) pay one comparison a
# row; a statement-level trigger would need a transition table of every updated row instead.
_PENDING_AGAIN = "NEW.status = 'PENDING' AND OLD.status IS DISTINCT FROM 'PENDING'"


# The fleet-wide switch: a start or stop made on any instance reaches every listening one at
# once (payload 'switch'), so a draining fleet stops within its sends in flight.
_SWITCH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION sms_dispatch_notify_switch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', 'switch');
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    """Add the send budget column and, on PostgreSQL, the new-message notification triggers."""
    with op.batch_alter_table("scheduler_state") as batch:
        batch.add_column(sa.Column("paced_until", UtcDateTime(), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER messages_notify_insert AFTER INSERT ON messages"
        " FOR EACH STATEMENT EXECUTE FUNCTION sms_dispatch_notify_new()"
    )
    op.execute(
        "CREATE TRIGGER messages_notify_pending AFTER UPDATE OF status ON messages"
        f" FOR EACH ROW WHEN ({_PENDING_AGAIN}) EXECUTE FUNCTION sms_dispatch_notify_new()"
    )
    op.execute(_SWITCH_FUNCTION)
    op.execute(
        "CREATE TRIGGER scheduler_state_notify_switch AFTER UPDATE OF running ON scheduler_state"
        " FOR EACH ROW WHEN (OLD.running IS DISTINCT FROM NEW.running)"
        " EXECUTE FUNCTION sms_dispatch_notify_switch()"
    )


def downgrade() -> None:
    """Drop the triggers and the send budget column."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS scheduler_state_notify_switch ON scheduler_state")
        op.execute("DROP FUNCTION IF EXISTS sms_dispatch_notify_switch()")
        op.execute("DROP TRIGGER IF EXISTS messages_notify_pending ON messages")
        op.execute("DROP TRIGGER IF EXISTS messages_notify_insert ON messages")
        op.execute("DROP FUNCTION IF EXISTS sms_dispatch_notify_new()")
    with op.batch_alter_table("scheduler_state") as batch:
        batch.drop_column("paced_until")
