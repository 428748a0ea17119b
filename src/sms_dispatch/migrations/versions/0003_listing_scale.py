"""Listing at scale: message counts kept by the database, and an index for every listing filter.

**Counts.** ``message_counts`` holds how many live (not soft-deleted) messages each status has,
so the sent listing's exact ``total`` and ``count_by_status`` read a few rows instead of
counting the table. Triggers on ``messages`` keep it exact whoever writes: the service, the Go
service, a plain-SQL insert or update by hand, a retention delete.

- PostgreSQL: statement-level triggers with transition tables. A statement that changes 1,000
  rows (a claim, a bulk finish) aggregates them and *appends* one row per status it changed to
  ``message_count_deltas``; writers never update a shared row, so concurrent writers neither
  queue behind a hot counter row nor deadlock on two of them (measured: one counter row per
  status cut concurrent single-row inserts about 4x; appended deltas cost no more than the
  noise). About every 256 deltas the writer that crosses the mark folds them into
  ``message_counts`` (one folder at a time, by a try-advisory lock; skipped in transactions
  stricter than READ COMMITTED, where the fold could raise a serialization error). A reader
  sums ``message_counts`` and the few unfolded deltas in one statement, so it always sees an
  exact, consistent count. ``TRUNCATE messages`` resets the counts.
- SQLite: row-level triggers update ``message_counts`` directly (one writer at a time anyway);
  ``message_count_deltas`` stays empty there.

The counts are backfilled from the rows already there (a new database, or the Go service's
adopted table) after the triggers exist: creating a trigger locks out writers until the
migration commits, so no row is counted twice or missed.

**Indexes.** Every filter combination of ``GET /messages/sent`` (``to``, ``since``/``until`` on
``sent_at``) and of ``GET /messages`` (``status``, ``to``, ``since``/``until`` on
``created_at``) is served by one of these, newest first with ``id`` as the tie-break, which is
also what keyset pagination (``cursor``) seeks on. They are built inside the migration's
transaction (as every migration here is): on a large existing table writes wait for the
scans that build them (about 2 s per index per million rows here).

SQLite note: a later migration that makes Alembic *recreate* ``messages`` (batch mode for
anything but adding a column) drops these triggers with the old table and must create them
again; the store contract tests count hand-inserted rows, so they would catch it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOLD_LOCK_KEY = 0x736D7364_636E7473  # 'smsdcnts': one fold of the count deltas at a time
FOLD_EVERY = 256  # deltas appended between two folds, about

SENT_WHERE = "status = 'SUCCESS' AND deleted_at IS NULL"
LIVE_WHERE = "deleted_at IS NULL"
INDEXES = {
    "ix_messages_sent_to": (['"to"', "sent_at DESC", "id DESC"], SENT_WHERE),
    "ix_messages_created": (["created_at DESC", "id DESC"], LIVE_WHERE),
    "ix_messages_status_created": (["status", "created_at DESC", "id DESC"], LIVE_WHERE),
    "ix_messages_to_created": (['"to"', "created_at DESC", "id DESC"], LIVE_WHERE),
}

_PG_FOLD = f"""
CREATE FUNCTION message_counts_fold() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock({FOLD_LOCK_KEY}) THEN
        RETURN;  -- another writer is folding, or folding here could fail this transaction
    END IF;
    WITH folded AS (DELETE FROM message_count_deltas RETURNING status, delta)
    INSERT INTO message_counts AS c (status, total)
    SELECT status, sum(delta) FROM folded GROUP BY status ORDER BY status
    ON CONFLICT (status) DO UPDATE SET total = c.total + EXCLUDED.total;
END
$$
"""  # noqa: S608 - formats in a constant, no input

# One function for the three triggers; each branch reads only the transition tables its
# operation has. An UPDATE that changes neither status nor deleted_at nets to no delta.
_PG_RECORD = f"""
CREATE FUNCTION message_counts_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    recorded bigint;
    last_id bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO message_count_deltas (status, delta)
        SELECT status, count(*) FROM new_rows WHERE deleted_at IS NULL GROUP BY status;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO message_count_deltas (status, delta)
        SELECT status, -count(*) FROM old_rows WHERE deleted_at IS NULL GROUP BY status;
    ELSE
        INSERT INTO message_count_deltas (status, delta)
        SELECT status, sum(change) FROM (
            SELECT status, 1 AS change FROM new_rows WHERE deleted_at IS NULL
            UNION ALL
            SELECT status, -1 FROM old_rows WHERE deleted_at IS NULL
        ) AS changes
        GROUP BY status HAVING sum(change) <> 0;
    END IF;
    GET DIAGNOSTICS recorded = ROW_COUNT;
    IF recorded > 0 THEN
        last_id := currval(pg_get_serial_sequence('message_count_deltas', 'id'));
        IF last_id % {FOLD_EVERY} < recorded THEN
            PERFORM message_counts_fold();
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""  # noqa: S608 - formats in a constant, no input

_PG_RESET = """
CREATE FUNCTION message_counts_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_count_deltas;
    DELETE FROM message_counts;
    RETURN NULL;
END
$$
"""

_PG_TRIGGERS = (
    "CREATE TRIGGER message_counts_insert AFTER INSERT ON messages"
    " REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION message_counts_record()",
    # Transition tables cannot be combined with a column list (UPDATE OF status, deleted_at):
    # every UPDATE fires it, and one that changes neither column records nothing.
    "CREATE TRIGGER message_counts_update AFTER UPDATE ON messages"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION message_counts_record()",
    "CREATE TRIGGER message_counts_delete AFTER DELETE ON messages"
    " REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION message_counts_record()",
    "CREATE TRIGGER message_counts_truncate AFTER TRUNCATE ON messages"
    " FOR EACH STATEMENT EXECUTE FUNCTION message_counts_reset()",
)
_PG_DROP = (
    "DROP TRIGGER IF EXISTS message_counts_truncate ON messages",
    "DROP TRIGGER IF EXISTS message_counts_delete ON messages",
    "DROP TRIGGER IF EXISTS message_counts_update ON messages",
    "DROP TRIGGER IF EXISTS message_counts_insert ON messages",
    "DROP FUNCTION IF EXISTS message_counts_reset()",
    "DROP FUNCTION IF EXISTS message_counts_record()",
    "DROP FUNCTION IF EXISTS message_counts_fold()",
)

_SQLITE_ADD = (
    "INSERT OR IGNORE INTO message_counts (status, total) VALUES (NEW.status, 0);"
    " UPDATE message_counts SET total = total + 1 WHERE status = NEW.status;"
)
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER message_counts_insert AFTER INSERT ON messages"
    f" WHEN NEW.deleted_at IS NULL BEGIN {_SQLITE_ADD} END",
    "CREATE TRIGGER message_counts_update AFTER UPDATE OF status, deleted_at ON messages"
    " WHEN OLD.status IS NOT NEW.status OR (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)"
    " BEGIN"
    " UPDATE message_counts SET total = total - 1 WHERE status = OLD.status AND OLD.deleted_at IS NULL;"
    " INSERT OR IGNORE INTO message_counts (status, total) VALUES (NEW.status, 0);"
    " UPDATE message_counts SET total = total + 1 WHERE status = NEW.status AND NEW.deleted_at IS NULL;"
    " END",
    "CREATE TRIGGER message_counts_delete AFTER DELETE ON messages"
    " WHEN OLD.deleted_at IS NULL"
    " BEGIN UPDATE message_counts SET total = total - 1 WHERE status = OLD.status; END",
)
_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS message_counts_delete",
    "DROP TRIGGER IF EXISTS message_counts_update",
    "DROP TRIGGER IF EXISTS message_counts_insert",
)

_BACKFILL = (
    "INSERT INTO message_counts (status, total)"
    " SELECT status, count(*) FROM messages WHERE deleted_at IS NULL GROUP BY status"
)


def upgrade() -> None:
    """Create the count tables, their triggers and backfill; add the listing indexes."""
    op.create_table(
        "message_counts",
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "message_count_deltas",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in (_PG_FOLD, _PG_RECORD, _PG_RESET, *_PG_TRIGGERS):
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(_BACKFILL)
    for name, (columns, where) in INDEXES.items():
        op.create_index(
            name,
            "messages",
            [sa.text(column) for column in columns],
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    """Drop the indexes, the triggers and the count tables."""
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="messages")
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _PG_DROP if postgres else _SQLITE_DROP:
        op.execute(statement)
    op.drop_table("message_count_deltas")
    op.drop_table("message_counts")
