"""The column types and database-side defaults that make the schema portable.

``Uuid36`` is a native ``uuid`` on PostgreSQL and 36-character dashed text on SQLite;
``UtcDateTime`` is ``timestamptz`` on PostgreSQL and naive UTC text on SQLite, and always comes
back timezone-aware UTC. ``new_uuid()`` and ``utc_now()`` are the database-side defaults, so
rows inserted by other programs with plain SQL get them too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
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
