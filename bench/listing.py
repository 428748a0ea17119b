"""Measure the listings at scale: server-side latency of each listing on 1M sent messages.

Builds a dedicated PostgreSQL database with the service's own migrations, fills it with
``--rows`` SUCCESS messages (plus 1 % FAILED) by ``INSERT ... SELECT generate_series``, vacuums
it, then serves the real app (``create_app`` over ``bootstrap``) in process and sends each
listing request through ``httpx.ASGITransport``, one at a time.

Server-side latency is taken inside the process by an ASGI wrapper around the whole app: from
the moment the app is called with the request to the moment it hands over the last byte of
the answer. That covers the middleware (request id, access log), routing, query validation, the
database round trips and the JSON encoding; it leaves out the HTTP parsing and socket writes
of a server such as uvicorn (tenths of a millisecond) and the client's own time.

The baseline is what the Go service does, served by the same app through a store whose
listings are plain ``LIMIT``/``OFFSET`` plus a ``count(*)`` of the same filter on the same
indexes. A second part measures what the counts and indexes cost the write path (claims,
finishes and concurrent inserts) in a small separate database. Every figure is checked first:
the totals are exact, the cursor page equals the offset page, filters hold, baseline and
sms-dispatch answer the same rows.

    .venv/bin/python bench/listing.py [--rows 1000000] [--quick] [--requests 300] [--keep] [--reuse]

Results are printed and written to ``bench/results/listing.md``; the database is dropped
afterwards unless ``--keep``. ``--reuse`` measures a database kept by an earlier ``--keep`` run
of the same ``--rows`` (migrated to the newest schema, not loaded again).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url

from sms_dispatch.adapters.database import create_engine, migrate
from sms_dispatch.adapters.sql_rows import from_row
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import messages
from sms_dispatch.api.app import create_app
from sms_dispatch.api.cursors import Listing, encode_cursor
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from sms_dispatch.domain import Status, Transition
from sms_dispatch.logs import configure_logging
from sms_dispatch.ports import MessageFilter, Page, Position
from sms_dispatch.service import MessageService

RESULTS = Path(__file__).parent / "results" / "listing.md"
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = "smsd_bench_listing"
UPKEEP_DB_NAME = "smsd_bench_listing_upkeep"
LIMIT = 20
RECIPIENTS = 10_000
SPAN = timedelta(days=25)
CHUNK_ROWS = 100_000
CLAIM = "bench-claim"  # the claim token of the write-path batches
_m = messages

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


@dataclass(frozen=True)
class Case:
    """One listing request; the baseline answers the same request unless it has no equivalent."""

    name: str
    path: str
    has_baseline: bool = True


@dataclass
class Timing:
    """Server-side latencies of one case, in milliseconds."""

    samples_ms: list[float]

    @property
    def p50(self) -> float:
        """The median."""
        return statistics.median(self.samples_ms)

    @property
    def p99(self) -> float:
        """The 99th percentile (the largest sample below 100 samples)."""
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class ServerTimer:
    """ASGI wrapper that records how long the app takes from its call to its last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples_ms: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one ASGI call, timing HTTP requests."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.samples_ms.append((time.perf_counter() - started) * 1e3)

        await self.app(scope, receive, timed_send)


class GoStyleStore(SqlMessageStore):
    """The Go service's way to list: ``LIMIT``/``OFFSET`` and a ``count(*)`` per request."""

    async def list_sent(
        self,
        *,
        limit: int,
        page: int = 1,
        after: Position | None = None,
        where: MessageFilter | None = None,
    ) -> Page:
        """Return the page by OFFSET and count every matching row."""
        conditions = [_m.c.status == "SUCCESS", _m.c.deleted_at.is_(None), *_filters(where, _m.c.sent_at)]
        order = (_m.c.sent_at.desc(), _m.c.id.desc())
        rows = select(_m).where(*conditions).order_by(*order).limit(limit).offset((page - 1) * limit)
        return await self._page_and_count(rows, conditions)

    async def list_messages(
        self, *, limit: int, after: Position | None = None, where: MessageFilter | None = None
    ) -> Page:
        """Return the first page and count every matching row."""
        conditions = [_m.c.deleted_at.is_(None), *_filters(where, _m.c.created_at)]
        if where is not None and where.status is not None:
            conditions.append(_m.c.status == where.status.value)
        rows = select(_m).where(*conditions).order_by(_m.c.created_at.desc(), _m.c.id.desc()).limit(limit)
        return await self._page_and_count(rows, conditions)

    async def _page_and_count(self, rows: Any, conditions: list[Any]) -> Page:
        async with self._engine.connect() as connection:
            items = [from_row(row) for row in await connection.execute(rows)]
            total = (await connection.execute(select(func.count()).where(*conditions))).scalar_one()
        return Page(items=items, total=total)


def _filters(where: MessageFilter | None, time_column: Any) -> list[Any]:
    if where is None:
        return []
    found = []
    if where.to is not None:
        found.append(_m.c.to == where.to)
    if where.since is not None:
        found.append(time_column >= where.since)
    if where.until is not None:
        found.append(time_column < where.until)
    return found


# Building the data.


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


def cases(*, deep_page: int, cursor: str, start: datetime) -> list[Case]:
    """Return the listing requests to measure, each with its baseline request."""
    recipient = quote("+905551004242")
    week = f"since={quote(_iso(start + SPAN / 3))}&until={quote(_iso(start + SPAN / 3 + timedelta(days=7)))}"
    day = f"since={quote(_iso(start + SPAN / 2))}&until={quote(_iso(start + SPAN / 2 + timedelta(days=1)))}"
    deep = f"/messages/sent?page={deep_page:d}&limit={LIMIT}"
    return [
        Case("sent, page 1 with total", f"/messages/sent?page=1&limit={LIMIT}"),
        Case(f"sent, page {deep_page:,} by page/limit", deep),
        Case(f"sent, page {deep_page:,} by cursor", f"/messages/sent?limit={LIMIT}&cursor={cursor}", False),
        Case("sent, to= and a 7-day since/until", f"/messages/sent?limit={LIMIT}&to={recipient}&{week}"),
        Case("sent, a 1-day since/until window", f"/messages/sent?limit={LIMIT}&{day}"),
        Case("dead letters: /messages?status=FAILED", f"/messages?status=FAILED&limit={LIMIT}"),
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Measuring.


@contextlib.asynccontextmanager
async def served(url: str) -> AsyncIterator[tuple[Services, ServerTimer, ServerTimer]]:
    """Serve the real app and a baseline app over one set of services; yield both timers."""
    settings = Settings(
        DATABASE_URL=url, SEED_ON_FIRST_RUN=0, LOG_LEVEL="WARNING", RETENTION_SUCCESS=0, RETENTION_FAILED=0
    )
    async with bootstrap(settings, run_dispatcher=False) as services:
        baseline_messages = MessageService(
            store=GoStyleStore(services.engine),
            cache=services.cache,
            clock=services.clock,
            max_length=settings.message_max_length,
        )
        baseline = dataclasses.replace(services, messages=baseline_messages)
        yield services, ServerTimer(create_app(services)), ServerTimer(create_app(baseline))


async def time_case(
    mine: ServerTimer, baseline: ServerTimer | None, path: str, *, requests: int, every: int
) -> tuple[Timing, Timing | None]:
    """Time ``requests`` GETs of ``path`` one at a time, and a baseline GET after every ``every``th.

    Interleaving puts both under the same load from the rest of the machine. Each app first
    answers 20 (baseline: 5) untimed requests, past the prepared statements' first plans.
    """
    timers = [mine] if baseline is None else [mine, baseline]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=timer), base_url="http://bench")
        for timer in timers
    ]
    try:
        for client, warmup in zip(clients, (20, 5), strict=False):
            for _ in range(warmup):
                (await client.get(path)).raise_for_status()
        for timer in timers:
            timer.samples_ms.clear()
        for n in range(requests):
            (await clients[0].get(path)).raise_for_status()
            if len(clients) > 1 and n % every == 0:
                (await clients[1].get(path)).raise_for_status()
    finally:
        for client in clients:
            await client.aclose()
    return Timing(list(mine.samples_ms)), None if baseline is None else Timing(list(baseline.samples_ms))


async def get_data(timer: ServerTimer, path: str) -> dict[str, Any]:
    """Return the ``data`` of one GET of ``path``."""
    transport = httpx.ASGITransport(app=timer)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        response = await client.get(path)
    response.raise_for_status()
    data: dict[str, Any] = response.json()["data"]
    return data


async def check(ours: ServerTimer, baseline: ServerTimer, listed: list[Case], rows: int) -> list[str]:
    """Check the answers before timing them; return what is wrong (nothing, normally)."""
    problems = []
    first = await get_data(ours, listed[0].path)
    if first["total"] != rows:
        problems.append(f"page 1 total {first['total']} != {rows} rows")
    by_page, by_cursor = await get_data(ours, listed[1].path), await get_data(ours, listed[2].path)
    if [i["id"] for i in by_page["items"]] != [i["id"] for i in by_cursor["items"]]:
        problems.append("the cursor page differs from the page/limit page")
    filtered = await get_data(ours, listed[3].path)
    if not filtered["items"] or any(i["to"] != "+905551004242" for i in filtered["items"]):
        problems.append("the to= filter answered no rows or other recipients")
    dead = await get_data(ours, listed[5].path)
    if dead["total"] != rows // 100 or any(i["status"] != "FAILED" for i in dead["items"]):
        problems.append(f"status=FAILED total {dead['total']} != {rows // 100}, or other statuses")
    for case in listed:
        if not case.has_baseline:
            continue
        mine, theirs = await get_data(ours, case.path), await get_data(baseline, case.path)
        if [i["id"] for i in mine["items"]] != [i["id"] for i in theirs["items"]]:
            problems.append(f"{case.name}: baseline and sms-dispatch list different rows")
        if mine["total"] is not None and mine["total"] != theirs["total"]:
            problems.append(f"{case.name}: total {mine['total']} != count(*) {theirs['total']}")
    return problems


async def explain(services: Services, timer: ServerTimer, path: str) -> list[str]:
    """Run ``path`` once, capture the SQL the app ran, and return EXPLAIN ANALYZE of each statement."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    event.listen(services.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await get_data(timer, path)
    finally:
        event.remove(services.engine.sync_engine, "before_cursor_execute", capture)
    plans = []
    async with services.engine.connect() as connection:
        for statement, parameters in captured:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            explained = await connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", tuple(parameters)
            )
            plans.append("\n".join(row[0] for row in explained))
    return plans


# The write path: what the counts and the listing indexes cost.

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


# Reporting.


def machine(pg_version: str) -> list[str]:
    """Describe the machine and the versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor() or "unknown",
    )
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}",
        f"- {pg_version}; Python {platform.python_version()}",
        f"- load average when done: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        " (other work shares this machine; ratios hold better than absolute figures)",
    ]


def listing_table(listed: list[Case], ours: dict[str, Timing], theirs: dict[str, Timing]) -> list[str]:
    """Return the listing table in Markdown."""
    lines = [
        "| listing (limit 20) | sms-dispatch p50 | p99 | baseline p50 | p99 | p50 ratio |",
        "|---|---|---|---|---|---|",
    ]
    for case in listed:
        mine = ours[case.name]
        other = theirs.get(case.name)
        if other is None:
            lines.append(f"| {case.name} | {mine.p50:.2f} ms | {mine.p99:.2f} ms | — (no cursor) | — | — |")
            continue
        ratio = other.p50 / mine.p50
        lines.append(
            f"| {case.name} | {mine.p50:.2f} ms | {mine.p99:.2f} ms | {other.p50:.2f} ms"
            f" | {other.p99:.2f} ms | {ratio:.1f}x |"
        )
    return lines


def upkeep_table(found: list[Upkeep]) -> list[str]:
    """Return the write-path table in Markdown."""
    lines = [
        "| write path (PostgreSQL) | claim 1,000 rows | finish 1,000 rows | 16 writers, single-row inserts |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {u.name} | {u.claim_ms:.2f} ms | {u.finish_ms:.2f} ms | {u.inserts_per_s:,.0f}/s |" for u in found
    ]
    return lines


async def run(args: argparse.Namespace) -> int:
    """Build, check, measure, report."""
    rows = 100_000 if args.quick and args.rows is None else (args.rows or 1_000_000)
    requests = args.requests or (60 if args.quick else 300)
    baseline_requests = (requests + 2) // 3
    deep_page = min(5000, rows // (2 * LIMIT))
    start = datetime.now(UTC).replace(microsecond=0) - SPAN - timedelta(hours=1)
    url = await kept_database(DB_NAME) if args.reuse else await recreate_database(DB_NAME)
    try:
        engine = create_engine(make_url(url), pool_size=2)
        await migrate(engine)
        async with engine.connect() as connection:
            pg_version = (await connection.execute(text("SHOW server_version"))).scalar_one()
            first_sent = (
                await connection.execute(text("SELECT min(sent_at) FROM messages WHERE status = 'SUCCESS'"))
            ).scalar_one()
        await engine.dispose()
        if args.reuse:
            if first_sent is None:
                print(f"--reuse: {DB_NAME} holds no sent messages; run with --keep first", file=sys.stderr)
                return 1
            start, load_s = first_sent - SPAN / rows, 0.0  # the first row is sent one step after start
        else:
            print(f"loading {rows:,} sent and {rows // 100:,} failed messages ...", file=sys.stderr)
            load_s = await load(url, rows, start=start)
        listed = cases(deep_page=deep_page, cursor=await cursor_before_page(url, deep_page), start=start)
        ours: dict[str, Timing] = {}
        theirs: dict[str, Timing] = {}
        plans: dict[str, list[str]] = {}
        async with served(url) as (services, mine, baseline):
            problems = await check(mine, baseline, listed, rows)
            if problems:
                print("\n".join(["CHECK FAILED:", *problems]), file=sys.stderr)
                return 1
            for case in listed:
                other = baseline if case.has_baseline else None
                timed, timed_baseline = await time_case(mine, other, case.path, requests=requests, every=3)
                ours[case.name] = timed
                if timed_baseline is not None:
                    theirs[case.name] = timed_baseline
                print(f"  {case.name}: p50 {ours[case.name].p50:.2f} ms", file=sys.stderr)
                plans[case.name] = await explain(services, mine, case.path)
        found = [] if args.no_upkeep else await upkeep(batches=10 if args.quick else 20, insert_s=3.0)
    finally:
        if not (args.keep or args.reuse):
            await drop_database(DB_NAME)
    report = [
        "# Listing at scale: server-side latency on PostgreSQL",
        "",
        *machine(f"PostgreSQL {pg_version}"),
        f"- command: `.venv/bin/python bench/listing.py{' --quick' if args.quick else ''}"
        f"{f' --rows {args.rows}' if args.rows else ''}{' --reuse' if args.reuse else ''}`",
        f"- data: {rows:,} SUCCESS messages to {RECIPIENTS:,} recipients over {SPAN.days} days and"
        f" {rows // 100:,} FAILED ones, "
        + (
            "kept from an earlier run (`--reuse`)"
            if args.reuse
            else f"loaded in {load_s:.0f} s, then `VACUUM (ANALYZE)`"
        ),
        f"- each listing: {requests} requests one at a time after 20 warm-up, with a baseline request"
        f" after every third ({baseline_requests} in all, after 5 warm-up), so both run under the same"
        " load; every answer checked first (exact totals, cursor page = offset page, filters hold,"
        " baseline lists the same rows)",
        "- latency is server-side: an ASGI wrapper around the real app (`create_app` over `bootstrap`,"
        " driven in process through `httpx.ASGITransport`) times each request from the app's call to"
        " its last body byte: middleware, routing, validation, database round trips, JSON. The HTTP"
        " parsing and socket writes of uvicorn are not in it",
        "- baseline: the same app and indexes with the Go service's listing, `LIMIT`/`OFFSET` plus"
        " `count(*)` of the same filter on every request",
        "",
        *listing_table(listed, ours, theirs),
        "",
        "Target: p50 under 5 ms for every listing at 1M rows. A deep page by page/limit (from 2,000"
        " rows deep, unfiltered) finds the hour of `sent_at` it starts in from per-hour counts the"
        " database keeps (migration 0007) and skips rows within that hour only, in the same statement"
        " as the total: exact, and about the same cost at any depth; a cursor seeks its position. Each"
        " listing is one statement, one round trip.",
    ]
    if found:
        report += [
            "",
            "## What the counts and indexes cost the write path",
            "",
            "A separate database migrated to head; each variant changes the schema further and"
            " measures the median of 1,000-row claims and finishes through `SqlMessageStore` (after"
            " 5 warm-up batches) and 16 connections inserting one row per transaction for 3 s."
            " Migration 0005's NOTIFY on every insert makes PostgreSQL queue notifying commits behind"
            " one lock, which caps concurrent single-row inserts whatever else the schema does; the"
            " rows after the first set it aside to show what the counts and indexes cost on their own.",
            "",
            *upkeep_table(found),
        ]
    report += ["", "## Query plans (EXPLAIN ANALYZE of the statements each listing ran)", ""]
    for name, explained in plans.items():
        report += [f"### {name}", "", "```", *("\n\n".join(explained)).splitlines(), "```", ""]
    text_out = "\n".join(report).rstrip() + "\n"
    print(text_out)
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text_out)
    return 0


def main() -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="sent messages to load (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows and fewer requests")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per listing")
    parser.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME}")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"measure the kept {DB_NAME} (same --rows) instead of loading one",
    )
    parser.add_argument("--no-upkeep", action="store_true", help="skip the write-path measurements")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {RESULTS.name} as it is")
    args = parser.parse_args()
    configure_logging(json_lines=False, level="WARNING")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
