"""Operations: the index retention reads to prune old FAILED and CANCELLED messages.

Retention deletes live FAILED and CANCELLED rows by ``updated_at`` (the time of their last
change), oldest first, in small batches: a partial index on ``updated_at`` for those statuses
lets each batch find its rows without scanning the table. SUCCESS rows are pruned by
``sent_at`` through the existing sent index (``ix_messages_sent``), read backwards, so the hot
path of a send maintains no extra index.

The index is built inside the migration's transaction (as every migration here is): on a
large existing table, writes wait for the one scan that builds it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETENTION_INDEX = "ix_messages_retention_failed"
RETENTION_WHERE = "status IN ('FAILED', 'CANCELLED') AND deleted_at IS NULL"


def upgrade() -> None:
    """Add the partial index on ``updated_at`` of live FAILED and CANCELLED messages."""
    op.create_index(
        RETENTION_INDEX,
        "messages",
        ["updated_at"],
        postgresql_where=sa.text(RETENTION_WHERE),
        sqlite_where=sa.text(RETENTION_WHERE),
    )


def downgrade() -> None:
    """Drop the retention index."""
    op.drop_index(RETENTION_INDEX, table_name="messages")
