"""The database schema as SQLAlchemy Core tables, and the column types that make it portable.

The same tables run on PostgreSQL and SQLite: ``Uuid36`` is a native ``uuid`` on PostgreSQL and
36-character dashed text on SQLite; ``UtcDateTime`` is ``timestamptz`` on PostgreSQL and naive
UTC text on SQLite, and always comes back timezone-aware UTC. ``new_uuid()`` and ``utc_now()``
are the database-side defaults, so rows inserted by other programs with plain SQL get them too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
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
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLite's text form of a timestamp, as SQLAlchemy writes it: 'YYYY-MM-DD HH:MM:SS.ffffff'.
# strftime's %f gives milliseconds ('SS.SSS'); the literal '000' pads it to microseconds so
# database defaults compare as text exactly like the values Python binds.
_SQLITE_NOW = "(strftime('%Y-%m-%d %H:%M:%f000', 'now'))"

# A random version-4 UUID as dashed lowercase text, for SQLite, which has no uuid function.
_SQLITE_UUID4 = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4'"
    " || substr(lower(hex(randomblob(2))), 2) || '-'"
    " || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2)"
    " || '-' || lower(hex(randomblob(6))))"
)


class new_uuid(FunctionElement[str]):
    """The database's own random UUID: ``gen_random_uuid()`` on PostgreSQL, text on SQLite."""

    type = String(36)
    inherit_cache = True


class utc_now(FunctionElement[datetime]):
    """The database's current time: ``now()`` on PostgreSQL, UTC text on SQLite."""

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(new_uuid, "postgresql")
def _new_uuid_pg(element: new_uuid, compiler: SQLCompiler, **kw: Any) -> str:
    return "gen_random_uuid()"


@compiles(new_uuid, "sqlite")
def _new_uuid_sqlite(element: new_uuid, compiler: SQLCompiler, **kw: Any) -> str:
    return _SQLITE_UUID4


@compiles(utc_now, "postgresql")
def _utc_now_pg(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(utc_now, "sqlite")
def _utc_now_sqlite(element: utc_now, compiler: SQLCompiler, **kw: Any) -> str:
    return _SQLITE_NOW


class Uuid36(TypeDecorator[uuid.UUID]):
    """A UUID: native ``uuid`` on PostgreSQL, 36-character dashed lowercase text elsewhere."""

    impl = String(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=True))
        return dialect.type_descriptor(String(36))

    def process_bind_param(self, value: uuid.UUID | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None or isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(str(value))


class UtcDateTime(TypeDecorator[datetime]):
    """A time: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite; always read as aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: times must be timezone-aware UTC")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
    Column("message_id", String(100), nullable=True),
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
Index(MESSAGE_ID_INDEX, messages.c.message_id)

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
Index(IDEMPOTENCY_INDEX, messages.c.idempotency_key, unique=True)

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
