"""Triggers that leave the Go service's columns free: its AutoMigrate can change their types.

The Go service's seed command runs GORM's AutoMigrate on ``messages``. On a table this service
has migrated, that issues ``ALTER TABLE messages ALTER COLUMN "to" TYPE varchar(20)``, the same
for ``content`` (``varchar(255)``) and ``status`` (``varchar(20)``), and drops the defaults and
NOT NULL constraints its model does not declare. PostgreSQL refuses to change the type of a
column that a trigger names in ``UPDATE OF`` or in its ``WHEN`` condition ("cannot alter type
of a column used in a trigger definition"), and two of ours did:

- ``messages_notify_pending`` (0005): ``AFTER UPDATE OF status ... WHEN (NEW.status = 'PENDING'
  AND ...)``, the wake-up of listening dispatchers when a row goes back to PENDING;
- ``messages_unvalidate`` (0006): ``BEFORE UPDATE OF "to", content ... WHEN (...)``, which
  clears ``validated`` when a row's recipient or content is changed by hand.

Both become one statement-level trigger, ``messages_after_update``, whose conditions are in its
function body, where PostgreSQL records no dependency on a column. It reads the statement's
transition tables (which the count trigger of 0003 already has PostgreSQL collect, so they cost
nothing more to keep):

- it notifies ``sms_dispatch_new`` when a row of the statement went to PENDING from another
  status; a first scan for any PENDING row keeps the join off the hot claims and finishes;
- it sets ``validated = false`` on the rows whose ``"to"`` or ``content`` changed (an UPDATE of
  those rows only; it fires this trigger again, which finds nothing left to clear). Only for
  statements of other programs: the service's own connections (``application_name``
  ``sms-dispatch``) never change either column, so its claims and finishes skip that join.

The row triggers cost a comparison per updated row; this one costs a call per UPDATE statement
and a scan of its rows (1,000 per claim or finish): about 0.25 µs per message claimed and
finished, measured in ``pg_stat_user_functions``; ``bench/pg_cost.py --variants 'before 0011'``
compares the whole, within its spread (see the CHANGELOG).

SQLite keeps its triggers: the Go service never ran there, and SQLite has no column types to
change. What AutoMigrate drops (the defaults, NOT NULL) is restored at every ``migrate`` and
``serve`` start, not by a revision: ``restore_go_automigrate_losses`` in ``adapters/database.py``.

Revision ID: 0011
Revises: 0009 (to be chained after 0010)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "sms_dispatch_new"  # as in 0005
APPLICATION_NAME = "sms-dispatch"  # as adapters/database.py names the service's connections

_AFTER_UPDATE = f"""
CREATE OR REPLACE FUNCTION sms_dispatch_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    edited uuid[];
BEGIN
    -- A row put back to PENDING (an operator's retry, a hand-back, a retry after backoff)
    -- wakes a listening dispatcher. Claims and finishes leave no row PENDING: one scan.
    IF EXISTS (SELECT 1 FROM new_rows WHERE status = 'PENDING')
       AND EXISTS (SELECT 1 FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
                   WHERE n.status = 'PENDING' AND o.status IS DISTINCT FROM 'PENDING') THEN
        PERFORM pg_notify('{CHANNEL}', '');
    END IF;
    -- A checked row whose recipient or content was changed by hand is checked again. The
    -- service's own statements never change either, so they skip the join of their rows.
    IF current_setting('application_name') <> '{APPLICATION_NAME}' THEN
        SELECT array_agg(n.id) INTO edited
        FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
        WHERE n.validated AND (n."to" IS DISTINCT FROM o."to" OR n.content IS DISTINCT FROM o.content);
        IF edited IS NOT NULL THEN
            UPDATE messages SET validated = false WHERE id = ANY (edited);
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""  # noqa: S608 - formats in a constant, no input

AFTER = (
    "DROP TRIGGER IF EXISTS messages_unvalidate ON messages",
    "DROP TRIGGER IF EXISTS messages_notify_pending ON messages",
    "DROP FUNCTION IF EXISTS sms_dispatch_unvalidate()",
    _AFTER_UPDATE,
    "CREATE TRIGGER messages_after_update AFTER UPDATE ON messages"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION sms_dispatch_after_update()",
)
"""The statements of the upgrade (PostgreSQL)."""

# What 0005 and 0006 had: the triggers as they were, for the downgrade (and the benchmark).
BEFORE = (
    "DROP TRIGGER IF EXISTS messages_after_update ON messages",
    "DROP FUNCTION IF EXISTS sms_dispatch_after_update()",
    """
CREATE OR REPLACE FUNCTION sms_dispatch_unvalidate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.validated := false;
    RETURN NEW;
END
$$
""",
    'CREATE TRIGGER messages_unvalidate BEFORE UPDATE OF "to", content ON messages FOR EACH ROW'
    ' WHEN (OLD."to" IS DISTINCT FROM NEW."to" OR OLD.content IS DISTINCT FROM NEW.content)'
    " EXECUTE FUNCTION sms_dispatch_unvalidate()",
    "CREATE TRIGGER messages_notify_pending AFTER UPDATE OF status ON messages FOR EACH ROW"
    " WHEN (NEW.status = 'PENDING' AND OLD.status IS DISTINCT FROM 'PENDING')"
    " EXECUTE FUNCTION sms_dispatch_notify_new()",
)
"""The statements of the downgrade (PostgreSQL): the triggers of 0005 and 0006 again."""


def upgrade() -> None:
    """Replace the two row triggers that name columns by one statement trigger (PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in AFTER:
            op.execute(statement)


def downgrade() -> None:
    """Put back the row triggers of 0005 and 0006 (PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in BEFORE:
            op.execute(statement)
