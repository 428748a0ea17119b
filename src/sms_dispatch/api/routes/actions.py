"""Operator actions on messages: replay dead letters (one, or all that match), cancel."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from sms_dispatch.api.deps import ServicesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.api.schemas import MessagePublic
from sms_dispatch.api.schemas_operations import RetryFilter, RetryResult
from sms_dispatch.api.security import OPERATE_ERRORS, OperateAccess
from sms_dispatch.operations import OperatorActions

router = APIRouter(
    prefix="/messages", tags=["operator actions"], dependencies=[OperateAccess], responses=OPERATE_ERRORS
)


async def _operations(services: ServicesDep) -> OperatorActions:
    return services.operations


OperationsDep = Annotated[OperatorActions, Depends(_operations)]


@router.post("/retry", response_model=Envelope[RetryResult], responses=error_responses(400, 503))
async def retry_matching(body: RetryFilter, operations: OperationsDep) -> Envelope[RetryResult]:
    """Replay every FAILED (or CANCELLED) message that matches, up to `limit` (at most 10,000).

    Each goes back to PENDING, due now, with its attempts counted from zero; the work is done
    500 messages per short transaction. Send `{}` to replay every FAILED message, or
    `{"errorClass": "invalid"}` to replay only those the message rules refused (for example the
    dead letters of an older, stricter rule).
    """
    retried = await operations.retry_matching(body.to_filter(), limit=body.limit)
    return ok(RetryResult(retried=retried))


@router.post(
    "/{message_id}/retry",
    response_model=Envelope[MessagePublic],
    responses=error_responses(400, 404, 409, 503),
)
async def retry_message(message_id: UUID, operations: OperationsDep) -> Envelope[MessagePublic]:
    """Replay one FAILED or CANCELLED message: back to PENDING, due now, attempts from zero.

    Its last error stays until the next attempt. Any other status is a 409 naming it.
    """
    return ok(MessagePublic.from_domain(await operations.retry(message_id)))


@router.post(
    "/{message_id}/cancel",
    response_model=Envelope[MessagePublic],
    responses=error_responses(400, 404, 409, 503),
)
async def cancel_message(message_id: UUID, operations: OperationsDep) -> Envelope[MessagePublic]:
    """Cancel a PENDING message: it is never sent. Any other status is a 409 naming it."""
    return ok(MessagePublic.from_domain(await operations.cancel(message_id)))
