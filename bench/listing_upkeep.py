"""What the counts and the listing indexes cost the write path: claims, finishes, inserts.

Runs in a small database of its own (``UPKEEP_DB_NAME``), migrated to head. Each variant takes
the schema a step further back (NOTIFY off, no hour counts, one counter row per status, no count
triggers, no listing indexes) and measures the same write path through ``SqlMessageStore``, so
the rows of the table differ by one change each.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from listing_data import drop_database, plain_url, recreate_database
from sqlalchemy import text
from sqlalchemy.engine import make_url

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.domain import Status, Transition

UPKEEP_DB_NAME = "smsd_bench_listing_upkeep"
CLAIM = "bench-claim"  # the claim token of the write-path batches
_COUNT_TRIGGERS = ("message_counts_insert", "message_counts_update", "message_counts_delete")
_LISTING_INDEXES = (
    "ix_messages_sent_to",
    "ix_messages_created",
    "ix_messages_status_created",
    "ix_messages_to_created",
)
_ONE_ROW_PER_STATUS = """
CREATE OR REPLACE FUNCTION message_counts_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO message_counts AS c (status, total)
        SELECT status, count(*) FROM new_rows WHERE deleted_at IS NULL GROUP BY status ORDER BY status
        ON CONFLICT (status) DO UPDATE SET total = c.total + EXCLUDED.total;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO message_counts AS c (status, total)
        SELECT status, sum(change) FROM (
            SELECT status, 1 AS change FROM new_rows WHERE deleted_at IS NULL
            UNION ALL SELECT status, -1 FROM old_rows WHERE deleted_at IS NULL) AS changes
        GROUP BY status HAVING sum(change) <> 0 ORDER BY status
        ON CONFLICT (status) DO UPDATE SET total = c.total + EXCLUDED.total;
    END IF;
    RETURN NULL;
END
$$
"""


@dataclass(frozen=True)
class Upkeep:
    """The write path under one schema variant."""

    name: str
    claim_ms: float
    finish_ms: float
    inserts_per_s: float


async def upkeep(*, batches: int, insert_s: float) -> list[Upkeep]:
    """Measure claim/finish of 1,000 rows and 16 concurrent inserters under each schema variant."""
    url = await recreate_database(UPKEEP_DB_NAME)
    engine = create_engine(make_url(url), pool_size=4)
    results = []
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            original = (
                await connection.execute(text("SELECT pg_get_functiondef('message_counts_record'::regproc)"))
            ).scalar_one()
            # Migration 0005's NOTIFY on every insert serializes concurrent commits (PostgreSQL
            # queues notifying commits behind one lock): it is measured once, then set aside so
            # the rows below compare the counts and indexes alone.
            notify = (
                await connection.execute(
                    text(
                        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'messages'::regclass"
                        " AND NOT tgisinternal AND tgname LIKE 'messages_notify%'"
                    )
                )
            ).scalars()
            no_notify = [f"ALTER TABLE messages DISABLE TRIGGER {name}" for name in notify]
        variants: list[tuple[str, list[str]]] = [
            ("as shipped, with 0005's new-message NOTIFY", []),
            ("as shipped, NOTIFY off: count deltas + hour counts + 4 listing indexes", no_notify),
            ("NOTIFY off, no hour counts (before 0007): status count deltas only", [_without_hour_counts()]),
            ("NOTIFY off, one counter row per status instead (rejected)", [_ONE_ROW_PER_STATUS]),
            (
                "NOTIFY off, no count triggers",
                [original, *(f"ALTER TABLE messages DISABLE TRIGGER {t}" for t in _COUNT_TRIGGERS)],
            ),
            (
                "NOTIFY off, no count triggers, no listing indexes (before 0003)",
                [f"DROP INDEX {i}" for i in _LISTING_INDEXES],
            ),
        ]
        for name, changes in variants:
            async with engine.begin() as connection:
                for change in changes:
                    await connection.execute(text(change))
            claim_ms, finish_ms = await _claim_and_finish(engine, batches=batches)
            results.append(Upkeep(name, claim_ms, finish_ms, await _inserts_per_s(url, seconds=insert_s)))
            print(f"  {name}: claim {claim_ms:.2f} ms, finish {finish_ms:.2f} ms", file=sys.stderr)
    finally:
        await engine.dispose()
        await drop_database(UPKEEP_DB_NAME)
    return results


def _without_hour_counts() -> str:
    """The count trigger function as migration 0003 made it, before 0007 added the hour counts."""
    path = Path(__file__).parents[1] / "src/sms_dispatch/migrations/versions/0003_listing_scale.py"
    spec = importlib.util.spec_from_file_location("sms_dispatch_migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: str = module._PG_RECORD
    return function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


async def _claim_and_finish(engine: Any, *, batches: int) -> tuple[float, float]:
    """Median ms of claiming and of finishing 1,000 rows, after 5 warm-up batches."""
    store = SqlMessageStore(engine)
    async with engine.begin() as connection:
        await connection.execute(text("TRUNCATE messages CASCADE"))
        await connection.execute(
            text(
                """INSERT INTO messages ("to", content, next_attempt_at)"""
                " SELECT '+905551004242', 'upkeep', now() - interval '1 hour' FROM generate_series(1, :n)"
            ),
            {"n": (batches + 5) * 1000},
        )
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM (ANALYZE) messages"))
    claims, finishes = [], []
    for n in range(batches + 5):
        now = datetime.now(UTC)
        began = time.perf_counter()
        claimed = await store.claim_due(
            limit=1000, now=now, lease_s=60, claim_token=CLAIM, claimed_by="bench"
        )
        claimed_s = time.perf_counter() - began
        done = [Transition(m.id, CLAIM, Status.SUCCESS, f"p-{m.id}", sent_at=now) for m in claimed]
        began = time.perf_counter()
        await store.finish(done, now=now)
        if n >= 5:
            claims.append(claimed_s * 1e3)
            finishes.append((time.perf_counter() - began) * 1e3)
    return statistics.median(claims), statistics.median(finishes)


async def _inserts_per_s(url: str, *, seconds: float, writers: int = 16) -> float:
    """Single-row inserts per second by ``writers`` connections at once (each its own transaction)."""
    connections = [await asyncpg.connect(plain_url(url)) for _ in range(writers)]
    done = 0
    stop = time.perf_counter() + seconds

    async def write(connection: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await connection.execute("""INSERT INTO messages ("to", content) VALUES ('+905551004242', 'x')""")
            done += 1

    try:
        await asyncio.gather(*(write(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    return done / seconds
