"""The listings' query parameters and answers: filters, cursors and the general message listing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sms_dispatch.api.cursors import MAX_CURSOR_LENGTH
from sms_dispatch.api.rfc3339 import parse_rfc3339
from sms_dispatch.api.schemas import MessagePublic
from sms_dispatch.domain import Status, normalise_recipient
from sms_dispatch.ports import Page


def parse_recipient(value: object) -> object:
    """Return a recipient filter in E.164, as messages store it; raise ``ValueError`` saying why not."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if value[:1] == " " and text[:1].isdigit():
        text = "+" + text  # an unencoded '+' arrives as a space
    return normalise_recipient(text)


LimitQuery = Annotated[int, Query(ge=1, le=100, description="Messages per page, 1 to 100.")]
CursorQuery = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="The `nextCursor` of the previous page, unchanged: the page after it.",
    ),
]
RecipientQuery = Annotated[
    str | None,
    Query(max_length=64, description="Only messages to this number (E.164, e.g. +905551111111)."),
    BeforeValidator(parse_recipient),
]
StatusQuery = Annotated[
    Status | None,
    Query(alias="status", description="Only messages in this status, e.g. FAILED (the dead letters)."),
]


def time_query(bound: str) -> object:
    """Return the ``Query`` of a time bound of the listing, in RFC 3339."""
    return Query(description=f"{bound} (RFC 3339 with a zone, e.g. 2026-01-01T12:00:00Z).")


SentSinceQuery = Annotated[
    datetime | None, time_query("Only messages sent at or after this time"), BeforeValidator(parse_rfc3339)
]
SentUntilQuery = Annotated[
    datetime | None, time_query("Only messages sent before this time"), BeforeValidator(parse_rfc3339)
]
CreatedSinceQuery = Annotated[
    datetime | None, time_query("Only messages created at or after this time"), BeforeValidator(parse_rfc3339)
]
CreatedUntilQuery = Annotated[
    datetime | None, time_query("Only messages created before this time"), BeforeValidator(parse_rfc3339)
]


class MessageList(BaseModel):
    """One page of messages, newest first, and the cursor of the next one."""

    model_config = ConfigDict(populate_by_name=True)

    items: list[MessagePublic]
    next_cursor: str | None = Field(
        alias="nextCursor", description="Pass as `cursor` for the next page; null on the last page."
    )
    total: int | None = Field(
        description="How many messages match, when that is cheap to know: with no filter or only"
        " `status` (read from counts the database keeps); null when `to`, `since` or `until` is given."
    )

    @classmethod
    def from_page(cls, result: Page, *, next_cursor: str | None) -> MessageList:
        """Convert a store page."""
        return cls(
            items=[MessagePublic.from_domain(m) for m in result.items],
            next_cursor=next_cursor,
            total=result.total,
        )
