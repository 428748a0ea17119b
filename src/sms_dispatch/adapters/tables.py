"""The database schema as SQLAlchemy Core tables (column types in ``column_types.py``).

The same tables run on PostgreSQL and SQLite; every change to them is a migration in
``sms_dispatch/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
    text,
    true,
)
from sqlalchemy.sql.elements import ColumnClause

from sms_dispatch.adapters.column_types import UtcDateTime as UtcDateTime
from sms_dispatch.adapters.column_types import Uuid36 as Uuid36
from sms_dispatch.adapters.column_types import new_uuid as new_uuid
from sms_dispatch.adapters.column_types import utc_now as utc_now
from sms_dispatch.domain import PROVIDER_ID_MAX_LENGTH

metadata = MetaData()

# Status literals for WHERE clauses: a partial index is only used when the query states its
# predicate literally; a bound `status = $1` in a generic plan (or in SQLite) cannot match it.
PENDING: ColumnClause[str] = literal_column("'PENDING'", String())
SENDING: ColumnClause[str] = literal_column("'SENDING'", String())
SUCCESS: ColumnClause[str] = literal_column("'SUCCESS'", String())

messages = Table(
    "messages",
    metadata,
    Column("id", Uuid36, primary_key=True, server_default=new_uuid()),
    Column("to", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("status", String(20), nullable=False, server_default=text("'PENDING'")),
    Column("message_id", String(PROVIDER_ID_MAX_LENGTH), nullable=True),
    Column("raw_response", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UtcDateTime, nullable=False, server_default=utc_now()),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("claim_token", String(36), nullable=True),
    Column("claimed_by", String(100), nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False, server_default=utc_now()),
    Column("updated_at", UtcDateTime, nullable=False, server_default=utc_now()),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    # Checked and normalised on the way in (API, CLI): not checked again before each send.
    Column("validated", Boolean, nullable=False, server_default=text("false")),
)

DUE_INDEX = "ix_messages_due"
SENT_INDEX = "ix_messages_sent"
LEASE_INDEX = "ix_messages_lease"
MESSAGE_ID_INDEX = "ix_messages_message_id"

_due_where = text("status = 'PENDING' AND deleted_at IS NULL")
_sent_where = text("status = 'SUCCESS' AND deleted_at IS NULL")
_lease_where = text("status = 'SENDING'")

Index(
    DUE_INDEX,
    messages.c.next_attempt_at,
    messages.c.id,
    postgresql_where=_due_where,
    sqlite_where=_due_where,
)
Index(
    SENT_INDEX,
    messages.c.sent_at.desc(),
    messages.c.id.desc(),
    postgresql_where=_sent_where,
    sqlite_where=_sent_where,
)
Index(
    LEASE_INDEX,
    messages.c.lease_until,
    postgresql_where=_lease_where,
    sqlite_where=_lease_where,
)
# Only rows with a provider id (migration 0009): a lookup by it implies NOT NULL.
_has_message_id = text("message_id IS NOT NULL")
Index(MESSAGE_ID_INDEX, messages.c.message_id, postgresql_where=_has_message_id, sqlite_where=_has_message_id)

# Listing at scale (migration 0003): one index per filter of the two listings, newest first with
# id as the tie-break (what a keyset cursor seeks on).
SENT_TO_INDEX = "ix_messages_sent_to"
CREATED_INDEX = "ix_messages_created"
STATUS_CREATED_INDEX = "ix_messages_status_created"
TO_CREATED_INDEX = "ix_messages_to_created"
_live_where = text("deleted_at IS NULL")
_c = messages.c
Index(
    SENT_TO_INDEX,
    _c.to,
    _c.sent_at.desc(),
    _c.id.desc(),
    postgresql_where=_sent_where,
    sqlite_where=_sent_where,
)
Index(
    CREATED_INDEX, _c.created_at.desc(), _c.id.desc(), postgresql_where=_live_where, sqlite_where=_live_where
)
Index(
    STATUS_CREATED_INDEX,
    _c.status,
    _c.created_at.desc(),
    _c.id.desc(),
    postgresql_where=_live_where,
    sqlite_where=_live_where,
)
Index(
    TO_CREATED_INDEX,
    _c.to,
    _c.created_at.desc(),
    _c.id.desc(),
    postgresql_where=_live_where,
    sqlite_where=_live_where,
)

# How many live messages each status has, kept by triggers on `messages` (migration 0003):
# `message_counts` plus the deltas PostgreSQL's statement triggers append until they are folded in.
message_counts = Table(
    "message_counts",
    metadata,
    Column("status", String(20), primary_key=True),
    Column("total", BigInteger, nullable=False, server_default=text("0")),
)
message_count_deltas = Table(
    "message_count_deltas",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("status", String(20), nullable=False),
    Column("delta", BigInteger, nullable=False),
)

# Live SUCCESS messages per hour of sent_at ('infinity': no sent_at), kept like the counts above
# on PostgreSQL only (migration 0007), where deep pages of the sent listing read them.
sent_hour_counts = Table(
    "sent_hour_counts",
    metadata,
    Column("hour", UtcDateTime, primary_key=True),
    Column("total", BigInteger, nullable=False, server_default=text("0")),
)
sent_hour_deltas = Table(
    "sent_hour_deltas",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("hour", UtcDateTime, nullable=False),
    Column("delta", BigInteger, nullable=False),
)

# Retention (migration 0004): FAILED and CANCELLED rows by the time of their last change.
# SUCCESS rows are pruned by sent_at through the sent index, read backwards.
RETENTION_INDEX = "ix_messages_retention_failed"
FAILED_OR_CANCELLED = text("status IN ('FAILED', 'CANCELLED')")
_retention_where = text("status IN ('FAILED', 'CANCELLED') AND deleted_at IS NULL")
Index(
    RETENTION_INDEX,
    messages.c.updated_at,
    postgresql_where=_retention_where,
    sqlite_where=_retention_where,
)

scheduler_state = Table(
    "scheduler_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("running", Boolean, nullable=False, server_default=true()),
    Column("last_run_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False, server_default=utc_now()),
    # The fleet's send budget (MESSAGE_RATE_LIMIT): sends granted so far are paid up to here.
    Column("paced_until", UtcDateTime, nullable=True),
    CheckConstraint("id = 1", name="ck_scheduler_state_single_row"),
)
SCHEDULER_ROW_ID = 1

IDEMPOTENCY_INDEX = "ux_messages_idempotency_key"
# Only rows with a key (migration 0009); the idempotent insert's ON CONFLICT names this predicate.
HAS_IDEMPOTENCY_KEY = text("idempotency_key IS NOT NULL")
Index(
    IDEMPOTENCY_INDEX,
    messages.c.idempotency_key,
    unique=True,
    postgresql_where=HAS_IDEMPOTENCY_KEY,
    sqlite_where=HAS_IDEMPOTENCY_KEY,
)

message_attempts = Table(
    "message_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", Uuid36, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("error_class", String(100), nullable=True),
    Column("error", Text, nullable=True),
    Column("response_excerpt", Text, nullable=True),
    Column("instance", String(100), nullable=True),
    Column("applied", Boolean, nullable=False, server_default=true()),
)
ATTEMPTS_INDEX = "ix_message_attempts_message"
Index(ATTEMPTS_INDEX, message_attempts.c.message_id, message_attempts.c.attempt)

instances = Table(
    "instances",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(40), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_heartbeat_at", UtcDateTime, nullable=False),
)
HEARTBEAT_INDEX = "ix_instances_heartbeat"
Index(HEARTBEAT_INDEX, instances.c.last_heartbeat_at)

# One row per schema upgrade, written by the migrate step in the upgrade's transaction (migration
# 0010): an older build meeting a newer schema can say which version wrote it.
schema_upgrades = Table(
    "schema_upgrades",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("revision_from", String(32), nullable=True),
    Column("revision_to", String(32), nullable=False),
    Column("version", String(40), nullable=False),
    Column("upgraded_at", UtcDateTime, nullable=False),
)
