"""The JSON envelope every answer uses: ``{"success", "data" | "error", "timestamp"}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[T]):
    """A successful answer."""

    success: bool = True
    data: T
    timestamp: datetime = Field(default_factory=utc_now)


class FieldError(BaseModel):
    """One invalid input field and what is wrong with it."""

    field: str = Field(examples=["limit"])
    message: str = Field(examples=["Input should be less than or equal to 100"])


class ErrorBody(BaseModel):
    """What went wrong: a stable code and a message for people."""

    code: str = Field(examples=["VALIDATION_ERROR"])
    message: str = Field(examples=["limit: Input should be less than or equal to 100"])
    details: list[FieldError] | None = None


class ErrorEnvelope(BaseModel):
    """A failed answer."""

    success: bool = False
    error: ErrorBody
    timestamp: datetime = Field(default_factory=utc_now)


def ok(data: T) -> Envelope[T]:
    """Wrap ``data`` in the success envelope."""
    return Envelope[T](data=data)


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """Return the OpenAPI ``responses`` entry documenting these error codes with the envelope."""
    described = {
        400: "The input is invalid; the message and details say which field and why.",
        401: "No API key, or an unknown one.",
        403: "The API key's scope does not allow this.",
        404: "No such resource.",
        409: "The action conflicts with the message's current state.",
        500: "An unexpected error; the log has the details.",
        503: "A dependency (database) does not answer.",
    }
    return {code: {"model": ErrorEnvelope, "description": described[code]} for code in codes}
