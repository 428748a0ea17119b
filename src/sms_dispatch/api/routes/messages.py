"""Messages: list the sent ones, list them all (dead letters too), create one, look one up."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status

from sms_dispatch.api.cursors import Listing, decode_cursor, encode_cursor
from sms_dispatch.api.deps import MessagesDep
from sms_dispatch.api.envelope import Envelope, error_responses, ok
from sms_dispatch.api.schemas import MessageCreate, MessageDetailPublic, MessagePublic, SentPage
from sms_dispatch.api.schemas_listing import (
    CreatedSinceQuery,
    CreatedUntilQuery,
    CursorQuery,
    LimitQuery,
    MessageList,
    RecipientQuery,
    SentSinceQuery,
    SentUntilQuery,
    StatusQuery,
)
from sms_dispatch.api.security import READ_ERRORS, OperateAccess, ReadAccess
from sms_dispatch.ports import MessageFilter

router = APIRouter(prefix="/messages", tags=["messages"], dependencies=[ReadAccess], responses=READ_ERRORS)


@router.get("/sent", response_model=Envelope[SentPage], responses=error_responses(400, 503))
async def list_sent(
    messages: MessagesDep,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    to: RecipientQuery = None,
    since: SentSinceQuery = None,
    until: SentUntilQuery = None,
) -> Envelope[SentPage]:
    """List the messages sent successfully, newest `sentAt` first, with the exact total.

    Page by `page` and `limit` (the Go service's way; pages may start at most 1,000,000 rows
    deep), or by `cursor`: pass each answer's `nextCursor` back for the next page, at the same
    cost at any depth and stable while messages are sent. With a cursor `page` is ignored.
    `to`, `since` and `until` (on `sentAt`) filter the listing; `total` is then null.
    """
    after = None if cursor is None else decode_cursor(Listing.SENT, cursor)
    where = MessageFilter(to=to, since=since, until=until)
    result = await messages.list_sent(page=page, limit=limit, after=after, where=where)
    next_cursor = encode_cursor(Listing.SENT, result.next_after)
    shown_page = None if after is not None else page
    return ok(SentPage.from_page(result, page=shown_page, limit=limit, next_cursor=next_cursor))


@router.get("", response_model=Envelope[MessageList], responses=error_responses(400, 503))
async def list_messages(
    messages: MessagesDep,
    status_: StatusQuery = None,
    to: RecipientQuery = None,
    since: CreatedSinceQuery = None,
    until: CreatedUntilQuery = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 20,
) -> Envelope[MessageList]:
    """List messages in any status, newest `createdAt` first; `status=FAILED` lists the dead letters.

    `status`, `to`, `since` and `until` (on `createdAt`) filter the listing. Page with `cursor`:
    pass each answer's `nextCursor` back for the next page. `total` is given when it is cheap
    (no filter, or only `status`), else null.
    """
    after = None if cursor is None else decode_cursor(Listing.CREATED, cursor)
    where = MessageFilter(status=status_, to=to, since=since, until=until)
    result = await messages.list_messages(limit=limit, after=after, where=where)
    return ok(MessageList.from_page(result, next_cursor=encode_cursor(Listing.CREATED, result.next_after)))


@router.post(
    "",
    response_model=Envelope[MessagePublic],
    status_code=status.HTTP_201_CREATED,
    dependencies=[OperateAccess],
    responses={
        200: {"model": Envelope[MessagePublic], "description": "A replay: the message made with this key."},
        **error_responses(400, 403, 409, 503),
    },
)
async def create_message(
    body: MessageCreate,
    messages: MessagesDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"^[ -~]+$",
            description="1 to 200 printable ASCII characters: the same key returns the same message"
            " (200) and creates no second one; the same key with another body is a 409.",
        ),
    ] = None,
) -> Envelope[MessagePublic]:
    """Queue a message for sending; it goes out with a later batch, oldest first."""
    if idempotency_key is None:
        message = await messages.create(body.to, body.content)
        return ok(MessagePublic.from_domain(message))
    outcome = await messages.create_once(body.to, body.content, idempotency_key=idempotency_key)
    if not outcome.created:
        response.status_code = status.HTTP_200_OK
    return ok(MessagePublic.from_domain(outcome.message))


@router.get(
    "/{message_id}", response_model=Envelope[MessageDetailPublic], responses=error_responses(400, 404, 503)
)
async def get_message(message_id: UUID, messages: MessagesDep) -> Envelope[MessageDetailPublic]:
    """Show one message, its provider answer and whether its cache entry exists."""
    detail = await messages.get(message_id)
    return ok(MessageDetailPublic.from_detail(detail))
