"""Readiness (``GET /ready``) and Prometheus metrics (``GET /metrics``); both open, even with keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from sms_dispatch.api.deps import ServicesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.observability.metrics import CONTENT_TYPE

READY_TIMEOUT_S = 2.0
"""How long readiness waits for each dependency before calling it down."""

router = APIRouter(tags=["operations"])


class Readiness(BaseModel):
    """Every dependency answers."""

    database: Literal["ok"] = Field(examples=["ok"])
    redis: Literal["ok", "not configured"] = Field(
        examples=["ok"], description='"not configured" when the cache is in process (no REDIS_* set).'
    )


async def _answers(check: Awaitable[bool]) -> bool:
    try:
        return await asyncio.wait_for(check, timeout=READY_TIMEOUT_S)
    except Exception:  # a dependency that errors or hangs is simply not ready
        return False


@router.get(
    "/ready",
    response_model=Envelope[Readiness],
    responses=error_responses(503),
)
async def ready(services: ServicesDep) -> Envelope[Readiness]:
    """Readiness: 200 when the database (and Redis, when configured) answer; 503 naming what does not."""
    redis_configured = services.settings.redis_connection_url() is not None
    database_ok, redis_ok = await asyncio.gather(
        _answers(services.store.ping()),
        _answers(services.cache.ping()) if redis_configured else _true(),
    )
    down = [name for name, up in (("database", database_ok), ("redis", redis_ok)) if not up]
    if down:
        verb = "does" if len(down) == 1 else "do"
        raise DependencyUnavailable(f"not ready: {' and '.join(down)} {verb} not answer")
    return ok(Readiness(database="ok", redis="ok" if redis_configured else "not configured"))


async def _true() -> bool:
    return True


_METRICS_EXAMPLE = """# HELP sms_dispatch_messages Live messages by status.
# TYPE sms_dispatch_messages gauge
sms_dispatch_messages{status="PENDING"} 8.0
# HELP sms_dispatch_queue_lag_seconds How long the oldest due PENDING message has waited ...
# TYPE sms_dispatch_queue_lag_seconds gauge
sms_dispatch_queue_lag_seconds 1.5
"""


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format (version 0.0.4).",
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}, "example": _METRICS_EXAMPLE}},
        }
    },
)
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus metrics: queue by status, lag, sends, batches, retries, rescues, cache, fleet.

    The classic Prometheus text format, or OpenMetrics when the scraper's `Accept` asks for it.
    """
    await services.metrics.refresh(store=services.store, dispatcher=services.dispatcher, clock=services.clock)
    body, content_type = services.metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
