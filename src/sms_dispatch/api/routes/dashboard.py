"""The dashboard at /dashboard (one page, its script and style, all packaged) and GET /stats.

The page loads nothing from another host: its Content-Security-Policy allows only this
origin, so it works with no internet and a stray external reference fails loudly in tests.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from sms_dispatch.api.deps import ServicesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.api.schemas import SchedulerStatusPublic
from sms_dispatch.api.security import ReadAccess
from sms_dispatch.domain import Status
from sms_dispatch.stats import QueueStats, queue_stats

ASSETS_DIR = Path(__file__).resolve().parent.parent / "dashboard"
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["dashboard"])


class StatsPublic(BaseModel):
    """The queue at a glance: what the dashboard shows."""

    model_config = ConfigDict(populate_by_name=True)

    counts: dict[Status, int] = Field(
        description="Live messages in each status (every status, zero included).",
        examples=[{"PENDING": 8, "SENDING": 0, "SUCCESS": 2, "FAILED": 1, "CANCELLED": 0}],
    )
    total: int = Field(description="All live messages.")
    sent_last_minute: int = Field(alias="sentLastMinute", description="Messages sent in the last 60 s.")
    sent_last_5_minutes: int = Field(alias="sentLast5Minutes", description="Messages sent in the last 300 s.")
    lag_seconds: float = Field(
        alias="lagSeconds",
        description="How long the oldest due PENDING message has waited past its due time; 0 when none.",
    )
    oldest_due_at: datetime | None = Field(
        alias="oldestDueAt", description="When the oldest due PENDING message became due; null when none."
    )
    scheduler: SchedulerStatusPublic
    measured_at: datetime = Field(alias="measuredAt")

    @classmethod
    def from_stats(cls, stats: QueueStats, *, provider_simulator: bool) -> StatsPublic:
        """Convert the use case's figures (``provider_simulator``: the built-in simulator stands in)."""
        return cls(
            counts=dict(stats.counts),
            total=sum(stats.counts.values()),
            sent_last_minute=stats.sent_last_minute,
            sent_last_5_minutes=stats.sent_last_5_minutes,
            lag_seconds=round(stats.lag_s, 3),
            oldest_due_at=stats.oldest_due_at,
            scheduler=SchedulerStatusPublic.from_status(
                stats.scheduler, provider_simulator=provider_simulator
            ),
            measured_at=stats.measured_at,
        )


@router.get(
    "/stats",
    response_model=Envelope[StatsPublic],
    dependencies=[ReadAccess],
    responses=error_responses(401, 503),
)
async def stats(services: ServicesDep) -> Envelope[StatsPublic]:
    """Show counts by status, sends in the last 1 and 5 minutes, the lag and the scheduler state
    (with `providerSimulator`: true when nothing is really delivered)."""
    figures = await queue_stats(store=services.store, dispatcher=services.dispatcher, clock=services.clock)
    return ok(StatsPublic.from_stats(figures, provider_simulator=services.provider_simulator))


@router.get("/dashboard", include_in_schema=False)
@router.get("/dashboard/", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    """Serve the dashboard page."""
    return FileResponse(
        ASSETS_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
    )


@router.get("/dashboard/app.js", include_in_schema=False)
async def dashboard_script() -> FileResponse:
    """Serve the dashboard's script."""
    return _asset("app.js")


@router.get("/dashboard/style.css", include_in_schema=False)
async def dashboard_style() -> FileResponse:
    """Serve the dashboard's style sheet."""
    return _asset("style.css")


def _asset(name: str) -> FileResponse:
    return FileResponse(ASSETS_DIR / name, media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})
