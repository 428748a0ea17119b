"""Only known statuses: a row inserted or changed by hand with another status is refused.

Before this a hand-written status such as ``'pending'`` or ``'sent'`` was stored, never claimed
(the claim looks for ``'PENDING'``) and broke the listings that read the row. Now:

- rows already there are adopted: a known status in another case or with spaces around it
  (``'pending'``, ``' Success '``) becomes the status it names; any other status becomes
  ``FAILED``, with ``last_error`` saying which status it had, so an operator can see it among
  the dead letters and retry it (nothing is deleted, nothing is sent without a decision);
- new writes must use one of ``PENDING``, ``SENDING``, ``SUCCESS``, ``FAILED``,
  ``CANCELLED``: on PostgreSQL the check constraint ``ck_messages_status_known`` refuses the
  statement (added ``NOT VALID`` and validated after the adoption, so the table is not locked
  for the scan); on SQLite, where a constraint cannot be added in place, triggers abort the
  statement with the same message.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KNOWN = ("PENDING", "SENDING", "SUCCESS", "FAILED", "CANCELLED")
CONSTRAINT = "ck_messages_status_known"
_IN_KNOWN = "(" + ", ".join(f"'{status}'" for status in KNOWN) + ")"
REFUSAL = f"messages.status must be one of {', '.join(KNOWN)}"

_ADOPT_CASE = (
    f"UPDATE messages SET status = upper(trim(status)) WHERE status NOT IN {_IN_KNOWN}"  # noqa: S608
    f" AND upper(trim(status)) IN {_IN_KNOWN}"
)
_ADOPT_UNKNOWN = (
    "UPDATE messages SET last_error = 'unknown status \"' || status"  # noqa: S608
    " || '\" found when only known statuses were enforced (migration 0008)',"
    f" status = 'FAILED', lease_until = NULL, claim_token = NULL WHERE status NOT IN {_IN_KNOWN}"
)
_SQLITE_TRIGGERS = {
    "messages_status_known_insert": "BEFORE INSERT ON messages",
    "messages_status_known_update": "BEFORE UPDATE OF status ON messages",
}


def upgrade() -> None:
    """Adopt the rows with other statuses, then refuse unknown statuses."""
    op.execute(_ADOPT_CASE)
    op.execute(_ADOPT_UNKNOWN)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER TABLE messages ADD CONSTRAINT {CONSTRAINT} CHECK (status IN {_IN_KNOWN}) NOT VALID"
        )
        op.execute(f"ALTER TABLE messages VALIDATE CONSTRAINT {CONSTRAINT}")
        return
    for name, when in _SQLITE_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {when} FOR EACH ROW WHEN NEW.status NOT IN {_IN_KNOWN}"
            f" BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
        )


def downgrade() -> None:
    """Accept any status again (the adopted rows keep their new status)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE messages DROP CONSTRAINT IF EXISTS {CONSTRAINT}")
        return
    for name in _SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
