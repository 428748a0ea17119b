"""Attempt history, idempotent creation and the fleet's instance list.

Adds ``messages.idempotency_key`` (unique), the ``message_attempts`` table (one row per
provider attempt) and the ``instances`` table (heartbeats of live processes).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sms_dispatch.adapters.tables import UtcDateTime, Uuid36

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the idempotency key, the attempt history and the instance list."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
    op.create_index("ux_messages_idempotency_key", "messages", ["idempotency_key"], unique=True)
    op.create_table(
        "message_attempts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("message_id", Uuid36(), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_class", sa.String(100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("instance", sa.String(100), nullable=True),
        # False when the send's answer came after the row was rescued or finished elsewhere.
        sa.Column("applied", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_index("ix_message_attempts_message", "message_attempts", ["message_id", "attempt"])
    op.create_table(
        "instances",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("last_heartbeat_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_instances_heartbeat", "instances", ["last_heartbeat_at"])


def downgrade() -> None:
    """Drop what ``upgrade`` added."""
    op.drop_index("ix_instances_heartbeat", table_name="instances")
    op.drop_table("instances")
    op.drop_index("ix_message_attempts_message", table_name="message_attempts")
    op.drop_table("message_attempts")
    op.drop_index("ux_messages_idempotency_key", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("idempotency_key")
