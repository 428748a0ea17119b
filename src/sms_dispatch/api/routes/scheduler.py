"""The scheduler switch (fleet-wide) and its state."""

from __future__ import annotations

from fastapi import APIRouter

from sms_dispatch.api.deps import DispatcherDep, ServicesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.api.go_json import GoJsonRoute
from sms_dispatch.api.schemas import SchedulerAction, SchedulerActionResult, SchedulerStatusPublic
from sms_dispatch.api.security import READ_ERRORS, OperateAccess, ReadAccess

# The Go service reads this body whatever its Content-Type (its README's examples use curl -d).
router = APIRouter(
    prefix="/scheduler",
    tags=["scheduler"],
    dependencies=[ReadAccess],
    responses=READ_ERRORS,
    route_class=GoJsonRoute,
)


@router.post(
    "",
    response_model=Envelope[SchedulerActionResult],
    dependencies=[OperateAccess],
    responses=error_responses(400, 403, 503),
)
async def control_scheduler(
    body: SchedulerAction, dispatcher: DispatcherDep
) -> Envelope[SchedulerActionResult]:
    """Start or stop sending. Answers at once, even mid-batch: a stop lets in-flight sends finish.

    As with the Go service, the body is read as JSON whatever its Content-Type (`curl -d` works),
    field names match in any case (`"Action"`) and unknown fields are ignored. A page of another
    origin must send `application/json`.
    """
    if body.action == "start":
        await dispatcher.start()
        return ok(SchedulerActionResult(message="scheduler started"))
    await dispatcher.stop()
    return ok(SchedulerActionResult(message="scheduler stopped"))


@router.get("", response_model=Envelope[SchedulerStatusPublic], responses=error_responses(503))
async def scheduler_status(
    dispatcher: DispatcherDep, services: ServicesDep
) -> Envelope[SchedulerStatusPublic]:
    """Show whether sending runs, the interval, the batch size, the last and next run, and whether
    the built-in provider simulator stands in for the provider."""
    status = await dispatcher.status()
    return ok(SchedulerStatusPublic.from_status(status, provider_simulator=services.provider_simulator))
