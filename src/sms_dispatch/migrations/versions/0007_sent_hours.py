"""Deep pages of the sent listing: SUCCESS rows counted per hour of ``sent_at``, kept by the database.

``GET /messages/sent?page=N`` must return rows ``(N-1)*limit`` onwards, newest ``sent_at``
first. Skipping them with ``OFFSET`` walks that many index entries (about 10 ms per 100,000
here). ``sent_hour_counts`` holds how many live SUCCESS messages each hour of ``sent_at`` has
(hours aligned on UTC; rows without ``sent_at`` under ``'infinity'``, which sorts where
PostgreSQL puts NULL in a descending order: first). A deep page sums the hours newest first
to find the hour its first row is in and skips only within that hour (see ``sql_listing.py``),
reading the counts and the rows in one statement, one snapshot: exact at any depth.

PostgreSQL only, kept like ``message_counts`` (migration 0003): the same statement triggers
append one delta per hour a statement changed to ``sent_hour_deltas`` (writers never update a
shared row), and the fold of the status deltas folds these too, dropping hours left empty (a
retention prune empties whole hours). ``message_counts_record``, ``message_counts_fold`` and
``message_counts_reset`` are replaced by versions that do both; downgrade restores 0003's.
On SQLite the tables exist and stay empty: deep pages there use plain ``OFFSET``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from sms_dispatch.adapters.tables import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOLD_LOCK_KEY = 0x736D7364_636E7473  # as in 0003: one fold of the count deltas at a time
FOLD_EVERY = 256  # as in 0003

SENT = "status = 'SUCCESS' AND deleted_at IS NULL"
# The hour of a sent_at, aligned on UTC whatever the session's TimeZone; NULL -> 'infinity'.
HOUR = "coalesce(date_bin('1 hour', sent_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), 'infinity')"

_PG_FOLD = f"""
CREATE OR REPLACE FUNCTION message_counts_fold() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       OR NOT pg_try_advisory_xact_lock({FOLD_LOCK_KEY}) THEN
        RETURN;  -- another writer is folding, or folding here could fail this transaction
    END IF;
    WITH folded AS (DELETE FROM message_count_deltas RETURNING status, delta)
    INSERT INTO message_counts AS c (status, total)
    SELECT status, sum(delta) FROM folded GROUP BY status ORDER BY status
    ON CONFLICT (status) DO UPDATE SET total = c.total + EXCLUDED.total;
    WITH folded AS (DELETE FROM sent_hour_deltas RETURNING hour, delta)
    INSERT INTO sent_hour_counts AS c (hour, total)
    SELECT hour, sum(delta) FROM folded GROUP BY hour HAVING sum(delta) <> 0 ORDER BY hour
    ON CONFLICT (hour) DO UPDATE SET total = c.total + EXCLUDED.total;
    DELETE FROM sent_hour_counts WHERE total = 0;
END
$$
"""  # noqa: S608 - formats in a constant, no input

_PG_RECORD = f"""
CREATE OR REPLACE FUNCTION message_counts_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    recorded bigint;
    hours bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO message_count_deltas (status, delta)
        SELECT status, count(*) FROM new_rows WHERE deleted_at IS NULL GROUP BY status;
        GET DIAGNOSTICS recorded = ROW_COUNT;
        INSERT INTO sent_hour_deltas (hour, delta)
        SELECT {HOUR}, count(*) FROM new_rows WHERE {SENT} GROUP BY 1;
        GET DIAGNOSTICS hours = ROW_COUNT;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO message_count_deltas (status, delta)
        SELECT status, -count(*) FROM old_rows WHERE deleted_at IS NULL GROUP BY status;
        GET DIAGNOSTICS recorded = ROW_COUNT;
        INSERT INTO sent_hour_deltas (hour, delta)
        SELECT {HOUR}, -count(*) FROM old_rows WHERE {SENT} GROUP BY 1;
        GET DIAGNOSTICS hours = ROW_COUNT;
    ELSE
        INSERT INTO message_count_deltas (status, delta)
        SELECT status, sum(change) FROM (
            SELECT status, 1 AS change FROM new_rows WHERE deleted_at IS NULL
            UNION ALL
            SELECT status, -1 FROM old_rows WHERE deleted_at IS NULL
        ) AS changes
        GROUP BY status HAVING sum(change) <> 0;
        GET DIAGNOSTICS recorded = ROW_COUNT;
        INSERT INTO sent_hour_deltas (hour, delta)
        SELECT hour, sum(change) FROM (
            SELECT {HOUR} AS hour, 1 AS change FROM new_rows WHERE {SENT}
            UNION ALL
            SELECT {HOUR}, -1 FROM old_rows WHERE {SENT}
        ) AS changes
        GROUP BY hour HAVING sum(change) <> 0;
        GET DIAGNOSTICS hours = ROW_COUNT;
    END IF;
    -- Fold about every {FOLD_EVERY} deltas of either kind (see 0003).
    IF (recorded > 0
        AND currval(pg_get_serial_sequence('message_count_deltas', 'id')) % {FOLD_EVERY} < recorded)
       OR (hours > 0
        AND currval(pg_get_serial_sequence('sent_hour_deltas', 'id')) % {FOLD_EVERY} < hours) THEN
        PERFORM message_counts_fold();
    END IF;
    RETURN NULL;
END
$$
"""  # noqa: S608 - formats in a constant, no input

_PG_RESET = """
CREATE OR REPLACE FUNCTION message_counts_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_count_deltas;
    DELETE FROM message_counts;
    DELETE FROM sent_hour_deltas;
    DELETE FROM sent_hour_counts;
    RETURN NULL;
END
$$
"""

# The ids of rows skip .. skip + wanted - 1 of the sent listing. `hours` sums the kept hour
# counts and their unfolded deltas; the running sum newest first finds the first hour whose
# rows reach past `skip`; the rows before that hour's end are then skipped by `skip` less the
# rows of the newer hours: a walk of at most one hour. Hour 'infinity' holds the rows without
# sent_at, which PostgreSQL lists first as it sorts 'infinity' first here; they are their own
# arm (a `sent_at <` bound leaves them out). STABLE: it reads its caller's snapshot. A generic
# plan, kept for the session: a custom plan per call (what `auto` picks here) costs more to
# plan (about 1.3 ms measured) than the statement costs to run.
_PG_PAGE = f"""
CREATE OR REPLACE FUNCTION sent_page_by_hours(skip_rows bigint, wanted bigint) RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH hours AS (
        SELECT hour, sum(n)::int AS n
        FROM (SELECT hour, total::int AS n FROM sent_hour_counts
              UNION ALL SELECT hour, delta::int FROM sent_hour_deltas) AS kept
        GROUP BY hour
    ), placed AS (
        SELECT hour, n, sum(n) OVER (ORDER BY hour DESC) AS through FROM hours
    ), start AS (
        SELECT hour + interval '1 hour' AS before,
               CASE WHEN hour = 'infinity' THEN through ELSE through - n END AS newer
        FROM placed WHERE through > skip_rows ORDER BY hour DESC LIMIT 1
    ), page AS (
        (SELECT m.id, m.sent_at FROM messages AS m WHERE {SENT} AND m.sent_at IS NULL
         ORDER BY m.sent_at DESC, m.id DESC OFFSET skip_rows LIMIT wanted)
        UNION ALL
        (SELECT m.id, m.sent_at FROM messages AS m WHERE {SENT} AND m.sent_at < (SELECT before FROM start)
         ORDER BY m.sent_at DESC, m.id DESC
         OFFSET greatest(skip_rows - (SELECT newer FROM start), 0) LIMIT wanted)
    )
    SELECT page.id FROM page ORDER BY page.sent_at DESC, page.id DESC LIMIT wanted;
END
$$
"""  # noqa: S608 - formats in constants, no input

_BACKFILL = f"INSERT INTO sent_hour_counts (hour, total) SELECT {HOUR}, count(*) FROM messages WHERE {SENT} GROUP BY 1"  # noqa: S608


def upgrade() -> None:
    """Create the hour counts and, on PostgreSQL, keep them with the status counts; backfill."""
    op.create_table(
        "sent_hour_counts",
        sa.Column("hour", UtcDateTime(), primary_key=True),
        sa.Column("total", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "sent_hour_deltas",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("hour", UtcDateTime(), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    # Replacing the trigger function takes no lock on `messages`: lock it against writers
    # first, so no statement between the backfill and the commit is counted twice or missed.
    op.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
    for statement in (_PG_FOLD, _PG_RECORD, _PG_RESET, _PG_PAGE, _BACKFILL):
        op.execute(statement)


def downgrade() -> None:
    """Restore 0003's count functions and drop the hour counts."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS sent_page_by_hours(bigint, bigint)")
        before = _migration_0003()
        for statement in (before._PG_FOLD, before._PG_RECORD, before._PG_RESET):
            op.execute(statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.drop_table("sent_hour_deltas")
    op.drop_table("sent_hour_counts")


def _migration_0003() -> ModuleType:
    """Load migration 0003 (its file name is no module name) for the functions it created."""
    path = Path(__file__).with_name("0003_listing_scale.py")
    spec = importlib.util.spec_from_file_location("sms_dispatch_migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
