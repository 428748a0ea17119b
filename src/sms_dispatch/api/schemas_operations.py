"""Schemas of the operator side: attempt history, the fleet's instances, bulk retry."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sms_dispatch.api.rfc3339 import parse_rfc3339
from sms_dispatch.domain import AttemptOutcome, AttemptRecord, Status, normalise_recipient
from sms_dispatch.operations import RETRY_LIMIT_MAX
from sms_dispatch.ports import InstanceInfo, MessageFilter


class AttemptPublic(BaseModel):
    """One attempt at sending a message."""

    model_config = ConfigDict(populate_by_name=True)

    attempt: int = Field(examples=[1])
    started_at: datetime = Field(alias="startedAt")
    duration_ms: float = Field(alias="durationMs", examples=[41.7])
    outcome: AttemptOutcome
    http_status: int | None = Field(alias="httpStatus", examples=[503])
    error_class: str | None = Field(alias="errorClass", examples=["http_5xx"])
    error: str | None = Field(examples=["provider answered HTTP 503: busy"])
    response_excerpt: str | None = Field(alias="responseExcerpt", description="At most 500 characters.")
    instance: str | None = Field(examples=["host-1234"])
    applied: bool = Field(
        description="False when the answer came after the message was rescued or finished elsewhere."
    )

    @classmethod
    def from_record(cls, record: AttemptRecord) -> AttemptPublic:
        """Convert an attempt record."""
        return cls(
            attempt=record.attempt,
            started_at=record.started_at,
            duration_ms=record.duration_ms,
            outcome=record.outcome,
            http_status=record.http_status,
            error_class=record.error_class,
            error=record.error,
            response_excerpt=record.response_excerpt,
            instance=record.instance,
            applied=record.applied,
        )


class InstancePublic(BaseModel):
    """A dispatcher of the fleet and its last heartbeat."""

    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(examples=["host-1234"])
    host: str
    pid: int
    version: str
    started_at: datetime = Field(alias="startedAt")
    last_heartbeat_at: datetime = Field(alias="lastHeartbeatAt")

    @classmethod
    def from_info(cls, info: InstanceInfo) -> InstancePublic:
        """Convert an instance."""
        return cls(
            name=info.name,
            host=info.host,
            pid=info.pid,
            version=info.version,
            started_at=info.started_at,
            last_heartbeat_at=info.last_heartbeat_at,
        )


class RetryFilter(BaseModel):
    """Which dead letters to replay; times without a zone are UTC."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "FAILED", "since": "2026-01-01T00:00:00Z", "limit": 500},
                {"errorClass": "invalid"},
            ]
        },
    )

    status: Literal["FAILED", "CANCELLED"] = "FAILED"
    to: str | None = Field(None, max_length=64, description="Only messages to this number.")
    since: datetime | None = Field(
        None, description="Only messages created at or after this time (RFC 3339 with a zone)."
    )
    until: datetime | None = Field(
        None, description="Only messages created before this time (RFC 3339 with a zone)."
    )
    error_class: str | None = Field(
        None,
        alias="errorClass",
        min_length=1,
        max_length=100,
        description=(
            "Only messages whose last attempt ended with this `errorClass` (as in their `history`):"
            " `invalid` (refused by the message rules before any send), `http_4xx`, `http_5xx`,"
            " `http_429`, `timeout`, `connection`, `bad_response`, `lease_expired`."
        ),
    )
    limit: int = Field(RETRY_LIMIT_MAX, ge=1, le=RETRY_LIMIT_MAX, description="The most messages to replay.")

    @field_validator("to")
    @classmethod
    def _recipient(cls, value: str | None) -> str | None:
        return None if value is None else normalise_recipient(value)

    @field_validator("since", "until", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        # As on the listings: RFC 3339 with its zone; a time without one (or a number) is a 400.
        if value is None:
            return None
        return parse_rfc3339(value if isinstance(value, str) else "")

    def to_filter(self) -> MessageFilter:
        """Return the store's filter."""
        return MessageFilter(
            status=Status(self.status),
            to=self.to,
            since=self.since,
            until=self.until,
            error_class=self.error_class,
        )


class RetryResult(BaseModel):
    """How many messages a bulk retry replayed."""

    retried: int = Field(examples=[42])
