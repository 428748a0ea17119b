"""The limit of ``messages.content`` where the database sets one, and its "value too long" as bad input.

Our migrations make ``content`` unbounded text, but the Go service's AutoMigrate (its seed
command) sets it back to ``varchar(255)`` on every run. Content longer than that is then bad
input (HTTP 400 naming the limit), never a failed insert (HTTP 500): ``content_max_length`` is
read once at start and checked with the message rules; ``raise_if_too_long`` turns PostgreSQL's
refusal (SQLSTATE 22001) into the same answer when the column changed after start.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.domain import NewMessage, stored_limit_fault
from sms_dispatch.errors import InvalidInput

_CONTENT_LIMIT = text(
    "SELECT character_maximum_length FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = 'messages' AND column_name = 'content'"
)
_STRING_DATA_RIGHT_TRUNCATION = "22001"
_LIMIT_IN_ERROR = re.compile(r"character varying\((\d+)\)")


async def content_max_length(engine: AsyncEngine) -> int | None:
    """Return the most characters ``messages.content`` holds, or None when it holds any length."""
    if engine.dialect.name != "postgresql":
        return None  # SQLite does not enforce a declared length
    async with engine.connect() as connection:
        limit = (await connection.execute(_CONTENT_LIMIT)).scalar_one_or_none()
    return None if limit is None else int(limit)


def raise_if_too_long(error: DBAPIError, message: NewMessage) -> None:
    """Raise ``InvalidInput`` naming the column's limit if ``error`` is PostgreSQL's "value too
    long" for ``message``'s content or recipient; otherwise return (the caller re-raises)."""
    if getattr(error.orig, "sqlstate", None) != _STRING_DATA_RIGHT_TRUNCATION:
        return
    found = _LIMIT_IN_ERROR.search(str(error.orig))
    if found is None:
        return
    limit = int(found[1])
    if len(message.content) > limit:
        raise InvalidInput({"content": stored_limit_fault(len(message.content), limit)}) from error
    if len(message.to) > limit:
        why = f'is {len(message.to)} characters long; the database\'s messages."to" column holds at most {limit}'
        raise InvalidInput({"to": why}) from error
