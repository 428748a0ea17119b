"""Build the listing benchmark's databases: create and drop them, fill them, find a deep cursor.

Rows are made by ``INSERT ... SELECT generate_series`` in chunks of ``CHUNK_ROWS`` rather than
through the service, whose write path is not what the listing cases measure. The database
helpers serve both parts of ``listing.py``: the listing cases and the write-path upkeep.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from sms_dispatch.api.cursors import Listing, encode_cursor
from sms_dispatch.ports import Position

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LIMIT = 20
RECIPIENTS = 10_000
SPAN = timedelta(days=25)
CHUNK_ROWS = 100_000

LOAD_SQL = """
INSERT INTO messages (id, "to", content, status, message_id, raw_response, last_error, attempts,
                      next_attempt_at, sent_at, created_at, updated_at)
SELECT gen_random_uuid(), '+90555' || lpad((1000000 + g % $3)::text, 7, '0'), 'Insider - Project',
       $4::varchar, CASE WHEN $4::varchar = 'SUCCESS' THEN gen_random_uuid()::text END,
       CASE WHEN $4::varchar = 'SUCCESS' THEN '{"message":"Accepted"}' END,
       CASE WHEN $4::varchar = 'FAILED' THEN 'provider answered HTTP 403' END, 1,
       t - interval '1 second', CASE WHEN $4::varchar = 'SUCCESS' THEN t END, t - interval '1 second', t
FROM (SELECT g, $5::timestamptz + g * $6::interval AS t FROM generate_series($1::int, $2::int) AS g) AS s
"""


async def recreate_database(name: str) -> str:
    """Drop and create database ``name``; return its asyncpg URL for SQLAlchemy."""
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return str(make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name))


async def kept_database(name: str) -> str:
    """Return the asyncpg URL of database ``name``, kept by an earlier ``--keep`` run."""
    return str(make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name))


async def drop_database(name: str) -> None:
    """Drop database ``name``."""
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def plain_url(sqlalchemy_url: str) -> str:
    """Return the asyncpg (``postgresql://``) form of a SQLAlchemy URL."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def load(url: str, rows: int, *, start: datetime) -> float:
    """Fill the migrated database with ``rows`` SUCCESS and ``rows // 100`` FAILED messages; return seconds."""
    began = time.perf_counter()
    connection = await asyncpg.connect(plain_url(url))
    try:
        for status, count in (("SUCCESS", rows), ("FAILED", rows // 100)):
            step = SPAN / count
            for low in range(1, count + 1, CHUNK_ROWS):
                high = min(low + CHUNK_ROWS - 1, count)
                await connection.execute(LOAD_SQL, low, high, RECIPIENTS, status, start, step)
                print(f"  loaded {status} {high:,}/{count:,}", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        await connection.execute("VACUUM (ANALYZE) messages")
    finally:
        await connection.close()
    return time.perf_counter() - began


async def cursor_before_page(url: str, page: int) -> str:
    """Return the cursor of the sent listing that leads to page ``page`` (of ``LIMIT`` rows)."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        row = await connection.fetchrow(
            "SELECT sent_at, id FROM messages WHERE status = 'SUCCESS' AND deleted_at IS NULL"
            " ORDER BY sent_at DESC, id DESC OFFSET $1 LIMIT 1",
            (page - 1) * LIMIT - 1,
        )
    finally:
        await connection.close()
    cursor = encode_cursor(Listing.SENT, Position(row["sent_at"], row["id"]))
    assert cursor is not None
    return cursor
