"""Messages: list the sent ones, create one, look one up."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from sms_dispatch.api.deps import MessagesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.api.schemas import MessageCreate, MessageDetailPublic, MessagePublic, SentPage

router = APIRouter(prefix="/messages", tags=["messages"])


@router.get("/sent", response_model=Envelope[SentPage], responses=error_responses(400, 503))
async def list_sent(
    messages: MessagesDep,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="Messages per page, 1 to 100.")] = 20,
) -> Envelope[SentPage]:
    """List the messages sent successfully, newest first, with the total count."""
    result = await messages.list_sent(page=page, limit=limit)
    return ok(SentPage.from_page(result, page=page, limit=limit))


@router.post(
    "",
    response_model=Envelope[MessagePublic],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 503),
)
async def create_message(body: MessageCreate, messages: MessagesDep) -> Envelope[MessagePublic]:
    """Queue a message for sending; it goes out with a later batch, oldest first."""
    message = await messages.create(body.to, body.content)
    return ok(MessagePublic.from_domain(message))


@router.get(
    "/{message_id}", response_model=Envelope[MessageDetailPublic], responses=error_responses(400, 404, 503)
)
async def get_message(message_id: UUID, messages: MessagesDep) -> Envelope[MessageDetailPublic]:
    """Show one message, its provider answer and whether its cache entry exists."""
    detail = await messages.get(message_id)
    return ok(MessageDetailPublic.from_detail(detail))
