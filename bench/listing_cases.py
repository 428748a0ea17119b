"""The listing cases of ``listing.py``: the requests, the Go-style baseline, timing and checks.

Each case is one listing request that the real app answers and, where the Go service has an
equivalent, the same app over ``GoStyleStore`` answers too. ``ServerTimer`` wraps each app to
take server-side latency; ``check`` proves the answers right before ``time_case`` times them,
and ``explain`` keeps the plans of the statements a request ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from listing_data import LIMIT, SPAN
from sqlalchemy import event, func, select

from sms_dispatch.adapters.sql_rows import from_row
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import messages
from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from sms_dispatch.domain import MessageRules
from sms_dispatch.ports import MessageFilter, Page, Position
from sms_dispatch.service import MessageService

_m = messages


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


@contextlib.asynccontextmanager
async def served(url: str) -> AsyncIterator[tuple[Services, ServerTimer, ServerTimer]]:
    """Serve the real app and a baseline app over one set of services; yield both timers."""
    settings = Settings(
        DATABASE_URL=url,
        SMS_PROVIDER_URL="simulator",
        SEED_ON_FIRST_RUN=0,
        LOG_LEVEL="WARNING",
        RETENTION_SUCCESS=0,
        RETENTION_FAILED=0,
    )
    async with bootstrap(settings, run_dispatcher=False) as services:
        baseline_messages = MessageService(
            store=GoStyleStore(services.engine),
            cache=services.cache,
            clock=services.clock,
            rules=MessageRules(settings.message_max_length),
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
