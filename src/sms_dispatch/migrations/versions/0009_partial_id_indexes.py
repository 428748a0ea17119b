"""Index only the rows that hold a provider id or an idempotency key.

``ix_messages_message_id`` and ``ux_messages_idempotency_key`` indexed every row, NULL
included. A message has no provider id until it is sent, and most have no idempotency key, yet
every row version wrote an entry into both: the insert, the claim and the finish each write a
new version (the status changes, so no update is HOT). Partial indexes (``WHERE ... IS NOT
NULL``) keep only the entries a lookup can use:

- ``message_id = :id`` (an operator finding a message by the provider's id) implies
  ``message_id IS NOT NULL``, so the planner still uses the index;
- the idempotent insert names the predicate in ``ON CONFLICT (idempotency_key) WHERE
  idempotency_key IS NOT NULL``, which infers the partial unique index; keys stay unique.

Measured (``bench/pg_cost.py --rounds 5 --messages 40000``, ``bench/results/pg_cost_steady.md``):
PostgreSQL CPU per message of a claim and a finish, 52.2 against 57.5 µs (58.3 against 59.3 in
a 3-round sitting, inside its spread): a small saving. The clear one is size: after 100,000 sends the
idempotency index is 8 KiB instead of 3.5 MiB, as it no longer grows with keyless messages.

**Upgrading a fleet:** an instance from before this migration names the whole index in its
idempotent insert (``ON CONFLICT (idempotency_key)``), which the database no longer matches once
the index is partial: its ``POST /messages`` with an ``Idempotency-Key`` then fails (HTTP 500,
nothing stored) until it is replaced. Stop the older instances before a new one migrates, or
expect their keyed creates to fail during the rollout; the client's retry with the same key
succeeds on a new instance. Every other route of an older instance keeps working.

On a table adopted from the Go service, ``ix_messages_message_id`` was never added (the Go
service's own ``idx_messages_message_id`` serves it) and that index is left as it is.

Each index is dropped and created again in the migration's transaction, so no insert sees the
table without its unique index. ``DROP INDEX`` locks ``messages`` until the migration commits:
reads and writes wait for the builds, measured at about 1.3 s for a million sent rows (1.2 s of
it the provider-id index; the idempotency-key index, mostly NULL, 0.1 s).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name -> (column, unique)
INDEXES = {
    "ux_messages_idempotency_key": ("idempotency_key", True),
    "ix_messages_message_id": ("message_id", False),
}


def upgrade() -> None:
    """Make both indexes partial: ``WHERE <column> IS NOT NULL``."""
    _recreate(partial=True)


def downgrade() -> None:
    """Index every row again, NULL included."""
    _recreate(partial=False)


def _recreate(*, partial: bool) -> None:
    present = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("messages")}
    for name, (column, unique) in INDEXES.items():
        if name not in present:
            continue
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        op.drop_index(name, table_name="messages")
        op.create_index(name, "messages", [column], unique=unique, postgresql_where=where, sqlite_where=where)
