"""Record who upgraded the schema: the ``schema_upgrades`` table.

The migrate step (``adapters/database.py``) adds one row per upgrade, in the upgrade's own
transaction: the revision before and after, and the sms-dispatch version that ran it. A build
that meets a schema newer than it knows reads the row for that revision and names the version
that wrote it ("database schema is at 0011, written by sms-dispatch 0.2.0"), instead of only
saying it cannot find the revision. This migration only creates the table; nothing else
depends on it, and later migrations need not touch it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sms_dispatch.adapters.tables import UtcDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``schema_upgrades``."""
    op.create_table(
        "schema_upgrades",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("revision_from", sa.String(32), nullable=True),
        sa.Column("revision_to", sa.String(32), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("upgraded_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    """Drop ``schema_upgrades``."""
    op.drop_table("schema_upgrades")
