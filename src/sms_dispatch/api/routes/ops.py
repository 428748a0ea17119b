"""Readiness (``GET /ready``) and Prometheus metrics (``GET /metrics``); both open, even with keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sms_dispatch.api.deps import ServicesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.api.outages import DATABASE, REDIS, ApiOutages
from sms_dispatch.errors import DependencyUnavailable
from sms_dispatch.observability.metrics import CONTENT_TYPE

READY_TIMEOUT_S = 2.0
"""How long readiness waits for each dependency before calling it down."""

router = APIRouter(tags=["operations"])


RedisState = Literal["ok", "degraded", "not configured"]


class Readiness(BaseModel):
    """The service can do its job: the database answers. Redis is reported, not required."""

    model_config = ConfigDict(populate_by_name=True)

    database: Literal["ok"] = Field(examples=["ok"])
    redis: RedisState = Field(
        examples=["ok"],
        description='"degraded": Redis does not answer; sending goes on and the cache entries wait'
        ' in the backlog. "not configured": the cache is in process (no REDIS_* set).',
    )
    cache_backlog: int = Field(
        alias="cacheBacklog",
        examples=[0],
        description="Sent-message cache entries waiting for Redis; written once it answers again.",
    )


async def _failure(name: str, check: Awaitable[bool]) -> BaseException | None:
    """Return why the dependency does not answer, or None when it does."""
    try:
        answered = await asyncio.wait_for(check, timeout=READY_TIMEOUT_S)
    except TimeoutError:
        return TimeoutError(f"{name} gave no answer within {READY_TIMEOUT_S:g} s")
    except Exception as exc:  # a dependency that errors is simply not ready
        return exc
    return None if answered else DependencyUnavailable(f"{name} does not answer", dependency=name)


@router.get(
    "/ready",
    response_model=Envelope[Readiness],
    responses=error_responses(503),
)
async def ready(services: ServicesDep, request: Request) -> Envelope[Readiness]:
    """Readiness: 200 while the database answers, with Redis reported ("degraded" when it does not
    answer: sending goes on and the cache backlog grows); a 503 naming the database when it does not.
    """
    outages: ApiOutages = request.app.state.outages
    started_at = outages.now()
    redis_configured = services.settings.redis_connection_url() is not None
    database_failure, redis_failure = await asyncio.gather(
        _failure(DATABASE, services.store.ping()),
        _failure(REDIS, services.cache.ping()) if redis_configured else _none(),
    )
    redis: RedisState = "not configured"
    if redis_configured and redis_failure is None:
        redis = "ok"
        outages.answered(REDIS, started_at=started_at)
    elif redis_configured and redis_failure is not None:
        redis = "degraded"
        outages.failed(REDIS, redis_failure, path=request.url.path)
    if database_failure is not None:
        also = "; redis does not answer either" if redis == "degraded" else ""
        raise DependencyUnavailable(
            f"not ready: the database does not answer{also}", dependency=DATABASE
        ) from database_failure
    backlog = services.deliverer.cache_writer.backlog_size
    return ok(Readiness(database="ok", redis=redis, cache_backlog=backlog))


async def _none() -> None:
    return None


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
