"""Create the messages and scheduler_state tables, or adopt the Go service's messages table.

A new database gets the whole schema. An existing, unversioned ``messages`` table (the Go
service's, made by GORM AutoMigrate, possibly without database defaults) is taken over in
place without losing a row: the missing columns are added, ``content`` widened to text and
``"to"`` to varchar(32), database defaults put on id/status/created_at/updated_at, and every
existing row backfilled (``next_attempt_at = created_at``, ``attempts`` 1 for SUCCESS/FAILED,
0 otherwise). Adoption is PostgreSQL only: the Go service never ran on SQLite.

Downgrade drops both tables when this revision created them. An adopted table is only
stripped of the columns and indexes added here; its widened types, defaults, backfilled
values and NOT NULL constraints stay (adoption is not reversed).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine.reflection import Inspector

from sms_dispatch.adapters.tables import UtcDateTime, Uuid36, new_uuid, utc_now

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADOPTED_COMMENT = "sms-dispatch: adopted from the Go service by migration 0001"
ADDED_ON_ADOPTION = (
    "last_error",
    "attempts",
    "next_attempt_at",
    "lease_until",
    "claim_token",
    "claimed_by",
)
PARTIAL_INDEXES = {
    "ix_messages_due": (["next_attempt_at", "id"], "status = 'PENDING' AND deleted_at IS NULL"),
    "ix_messages_sent": (["sent_at DESC", "id DESC"], "status = 'SUCCESS' AND deleted_at IS NULL"),
    "ix_messages_lease": (["lease_until"], "status = 'SENDING'"),
}


def upgrade() -> None:
    """Create or adopt ``messages``, add its indexes, and create ``scheduler_state``."""
    bind = op.get_bind()
    if sa.inspect(bind).has_table("messages"):
        _adopt_messages(bind)
    else:
        _create_messages()
    _create_indexes(sa.inspect(bind))
    if not sa.inspect(bind).has_table("scheduler_state"):
        _create_scheduler_state()


def downgrade() -> None:
    """Drop what this revision added (see the module docstring for adopted tables)."""
    bind = op.get_bind()
    op.drop_table("scheduler_state")
    inspector = sa.inspect(bind)
    adopted = (
        bind.dialect.name == "postgresql"
        and inspector.get_table_comment("messages").get("text") == ADOPTED_COMMENT
    )
    if not adopted:
        op.drop_table("messages")
        return
    present = {index["name"] for index in inspector.get_indexes("messages")}
    for name in [*PARTIAL_INDEXES, "ix_messages_message_id"]:
        if name in present:
            op.drop_index(name, table_name="messages")
    for column in ADDED_ON_ADOPTION:
        op.drop_column("messages", column)
    op.drop_table_comment("messages")


def _create_messages() -> None:
    op.create_table(
        "messages",
        sa.Column("id", Uuid36(), primary_key=True, server_default=new_uuid()),
        sa.Column("to", sa.String(32), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default=sa.text("'PENDING'")),
        sa.Column("message_id", sa.String(100), nullable=True),
        sa.Column("raw_response", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("claim_token", sa.String(36), nullable=True),
        sa.Column("claimed_by", sa.String(100), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.Column("updated_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
    )


def _adopt_messages(bind: sa.Connection) -> None:
    if bind.dialect.name != "postgresql":
        raise RuntimeError(
            "found a messages table without sms-dispatch's migration history; "
            "adopting one is supported on PostgreSQL only"
        )
    columns = {column["name"]: column for column in sa.inspect(bind).get_columns("messages")}
    absent = {"id", "to", "content", "status"} - columns.keys()
    if absent:
        raise RuntimeError(f"the existing messages table has no {sorted(absent)} column(s)")
    _widen(columns)
    for name, type_ in (
        ("message_id", sa.String(100)),
        ("raw_response", sa.Text()),
        ("sent_at", UtcDateTime()),
        ("created_at", UtcDateTime()),
        ("updated_at", UtcDateTime()),
        ("deleted_at", UtcDateTime()),
        ("last_error", sa.Text()),
        ("next_attempt_at", UtcDateTime()),
        ("lease_until", UtcDateTime()),
        ("claim_token", sa.String(36)),
        ("claimed_by", sa.String(100)),
    ):
        if name not in columns:
            op.add_column("messages", sa.Column(name, type_, nullable=True))
    if "attempts" not in columns:
        op.add_column("messages", sa.Column("attempts", sa.Integer(), nullable=True))
    # One pass over the rows. A row without a status was inserted by hand to be sent: PENDING.
    op.execute(
        "UPDATE messages SET"
        " status = COALESCE(status, 'PENDING'),"
        " created_at = COALESCE(created_at, updated_at, now()),"
        " updated_at = COALESCE(updated_at, created_at, now()),"
        " next_attempt_at = COALESCE(next_attempt_at, created_at, now()),"
        " attempts = COALESCE(attempts,"
        "   CASE WHEN status IN ('SUCCESS', 'FAILED') THEN 1 ELSE 0 END)"
    )
    defaults = {
        "id": "gen_random_uuid()",
        "status": "'PENDING'",
        "attempts": "0",
        "next_attempt_at": "now()",
        "created_at": "now()",
        "updated_at": "now()",
    }
    for name, default in defaults.items():
        op.alter_column("messages", name, server_default=sa.text(default), nullable=False)
    # A row without a recipient or content cannot be sent: fail loudly rather than guess.
    op.alter_column("messages", "to", nullable=False)
    op.alter_column("messages", "content", nullable=False)
    op.create_table_comment("messages", ADOPTED_COMMENT)


def _widen(columns: dict[str, sa.engine.interfaces.ReflectedColumn]) -> None:
    to_type = columns["to"]["type"]
    if isinstance(to_type, sa.String) and to_type.length is not None and to_type.length < 32:
        op.alter_column("messages", "to", type_=sa.String(32))
    if not isinstance(columns["content"]["type"], sa.Text):
        op.alter_column("messages", "content", type_=sa.Text())
    for name in ("sent_at", "created_at", "updated_at", "deleted_at"):
        found = columns.get(name)
        if found is not None and not getattr(found["type"], "timezone", True):
            # GORM's default is timestamptz; a naive timestamp is taken to be UTC.
            op.alter_column(
                "messages",
                name,
                type_=UtcDateTime(),
                postgresql_using=f"{name} AT TIME ZONE 'UTC'",
            )


def _create_indexes(inspector: Inspector) -> None:
    existing = inspector.get_indexes("messages")
    names = {index["name"] for index in existing}
    for name, (columns, where) in PARTIAL_INDEXES.items():
        if name not in names:
            op.create_index(
                name,
                "messages",
                [sa.text(column) for column in columns],
                postgresql_where=sa.text(where),
                sqlite_where=sa.text(where),
            )
    if not any(index["column_names"] == ["message_id"] for index in existing):
        op.create_index("ix_messages_message_id", "messages", ["message_id"])


def _create_scheduler_state() -> None:
    state = op.create_table(
        "scheduler_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("running", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("last_run_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False, server_default=utc_now()),
        sa.CheckConstraint("id = 1", name="ck_scheduler_state_single_row"),
    )
    op.execute(sa.insert(state).values(id=1, running=True))
