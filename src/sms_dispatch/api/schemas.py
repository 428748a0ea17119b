"""Request and response schemas: the OpenAPI contract. Field names follow the Go service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from sms_dispatch.api.go_json import GoJsonModel
from sms_dispatch.api.schemas_operations import AttemptPublic, InstancePublic
from sms_dispatch.dispatcher import SchedulerStatus
from sms_dispatch.domain import Message, Status
from sms_dispatch.durations import format_duration
from sms_dispatch.ports import Page
from sms_dispatch.service import CacheEntry, MessageDetail


class Welcome(BaseModel):
    """The welcome message."""

    message: str = Field(examples=["Welcome to sms-dispatch"])


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class Pong(BaseModel):
    """Answer to ping."""

    pong: bool = True


class MessageCreate(BaseModel):
    """A message to send: recipient in international format and the text."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"to": "+905551111111", "content": "Insider - Project"}]}
    )

    to: str = Field(max_length=64)
    content: str = Field(max_length=100_000)


class MessagePublic(BaseModel):
    """A message as the API shows it (the Go service's fields first)."""

    model_config = ConfigDict(populate_by_name=True)

    id: UUID
    to: str = Field(examples=["+905551111111"])
    content: str = Field(examples=["Insider - Project"])
    status: Status
    message_id: str | None = Field(alias="messageId", examples=["67f2f8a8-ea58-4ed0-a6f9-ff217df4d849"])
    sent_at: datetime | None = Field(alias="sentAt")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    attempts: int
    last_error: str | None = Field(alias="lastError")
    next_attempt_at: datetime | None = Field(alias="nextAttemptAt")

    @classmethod
    def from_domain(cls, message: Message) -> MessagePublic:
        """Convert a domain message."""
        return cls(
            id=message.id,
            to=message.to,
            content=message.content,
            status=message.status,
            message_id=message.message_id,
            sent_at=message.sent_at,
            created_at=message.created_at,
            updated_at=message.updated_at,
            attempts=message.attempts,
            last_error=message.last_error,
            next_attempt_at=message.next_attempt_at if message.status is Status.PENDING else None,
        )


class CachePublic(BaseModel):
    """The cache entry of a sent message (``sent_messages:<messageId>``)."""

    model_config = ConfigDict(populate_by_name=True)

    key: str = Field(examples=["sent_messages:67f2f8a8-ea58-4ed0-a6f9-ff217df4d849"])
    present: bool
    sent_at: str | None = Field(alias="sentAt")
    ttl_seconds: float | None = Field(alias="ttlSeconds")
    error: str | None = None

    @classmethod
    def from_entry(cls, entry: CacheEntry) -> CachePublic:
        """Convert a cache entry."""
        return cls(
            key=entry.key,
            present=entry.present,
            sent_at=entry.sent_at,
            ttl_seconds=entry.ttl_s,
            error=entry.error,
        )


class MessageDetailPublic(MessagePublic):
    """A message with its provider answer and cache entry."""

    model_config = ConfigDict(populate_by_name=True)

    raw_response: str | None = Field(alias="rawResponse")
    cache: CachePublic | None
    history: list[AttemptPublic] = Field(
        default_factory=list, description="Every attempt, oldest first (`attempts` stays the count)."
    )

    @classmethod
    def from_detail(cls, detail: MessageDetail) -> MessageDetailPublic:
        """Convert a message detail."""
        base = MessagePublic.from_domain(detail.message).model_dump()
        return cls(
            **base,
            raw_response=detail.message.raw_response,
            cache=CachePublic.from_entry(detail.cache) if detail.cache else None,
            history=[AttemptPublic.from_record(record) for record in detail.history],
        )


class SentPage(BaseModel):
    """One page of sent messages (the Go service's shape, plus `nextCursor`)."""

    model_config = ConfigDict(populate_by_name=True)

    items: list[MessagePublic]
    total: int | None = Field(
        description="Every message sent successfully, exact (read from counts the database keeps);"
        " null when `to`, `since` or `until` filters the listing."
    )
    page: int | None = Field(description="The page asked for; null when `cursor` chose the page.")
    limit: int
    next_cursor: str | None = Field(
        alias="nextCursor", description="Pass as `cursor` for the next page; null on the last page."
    )

    @classmethod
    def from_page(cls, result: Page, *, page: int | None, limit: int, next_cursor: str | None) -> SentPage:
        """Convert a store page."""
        return cls(
            items=[MessagePublic.from_domain(m) for m in result.items],
            total=result.total,
            page=page,
            limit=limit,
            next_cursor=next_cursor,
        )


class SchedulerAction(GoJsonModel):
    """Start or stop the scheduler (for the whole fleet).

    Read as the Go service reads it: JSON whatever the Content-Type, field names in any case,
    unknown fields ignored.
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [{"action": "start"}]})

    action: Literal["start", "stop"]


class SchedulerActionResult(BaseModel):
    """What the action did."""

    message: Literal["scheduler started", "scheduler stopped"]


class SchedulerStatusPublic(BaseModel):
    """The scheduler's state."""

    model_config = ConfigDict(populate_by_name=True)

    running: bool
    in_batch: bool = Field(alias="inBatch")
    interval: str = Field(examples=["2m"])
    interval_seconds: float = Field(alias="intervalSeconds")
    batch_size: int = Field(alias="batchSize")
    last_run_at: datetime | None = Field(alias="lastRunAt")
    next_run_at: datetime | None = Field(alias="nextRunAt")
    instance: str
    instances: list[InstancePublic] = Field(
        default_factory=list, description="The dispatchers seen within 3 heartbeat periods, by name."
    )
    provider_simulator: bool = Field(
        alias="providerSimulator",
        description="True when this instance sends to the built-in provider simulator: nothing is delivered.",
    )

    @classmethod
    def from_status(cls, status: SchedulerStatus, *, provider_simulator: bool) -> SchedulerStatusPublic:
        """Convert the dispatcher's status; ``provider_simulator`` says whether the simulator stands in."""
        return cls(
            provider_simulator=provider_simulator,
            running=status.running,
            in_batch=status.in_batch,
            interval=format_duration(status.interval_s),
            interval_seconds=status.interval_s,
            batch_size=status.batch_size,
            last_run_at=status.last_run_at,
            next_run_at=status.next_run_at,
            instance=status.instance,
            instances=[InstancePublic.from_info(info) for info in status.instances],
        )
