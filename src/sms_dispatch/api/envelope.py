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
    """What went wrong: the HTTP status as the Go service sends it, a stable name, a message for people."""

    code: int = Field(
        examples=[400], description="The HTTP status of the answer, an integer (as the Go service sends it)."
    )
    type: str = Field(
        examples=["VALIDATION_ERROR"],
        description="A stable name of the error: VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, NOT_FOUND,"
        " METHOD_NOT_ALLOWED, CONFLICT, INTERNAL_ERROR, DEPENDENCY_UNAVAILABLE, ...",
    )
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
    return {
        code: {
            "model": ErrorEnvelope,
            "description": _ERRORS[code][0],
            "content": {"application/json": {"example": _error_example(code)}},
        }
        for code in codes
    }


# Each documented error: what it means, and the type and message of an example answer.
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: (
        "The input is invalid; the message and details say which field and why.",
        "VALIDATION_ERROR",
        "limit: Input should be less than or equal to 100",
    ),
    401: (
        "No API key, or an unknown one (the answer has `WWW-Authenticate`).",
        "UNAUTHORIZED",
        "an API key is required: send Authorization: Bearer <key> or X-API-Key",
    ),
    403: (
        "The API key's scope does not allow this.",
        "FORBIDDEN",
        "this key's scope is read; this needs an operate key",
    ),
    404: ("No such resource.", "NOT_FOUND", "no message with id 0b6f7c1e-2a5d-4c1e-9a57-3f2d8e4b6a10"),
    409: ("The action conflicts with the message's current state.", "CONFLICT", "the message is SUCCESS"),
    500: (
        "An unexpected error; the log has the details.",
        "INTERNAL_ERROR",
        "internal error; see the service log",
    ),
    503: (
        "The database does not answer; try again later.",
        "DEPENDENCY_UNAVAILABLE",
        "the database does not answer",
    ),
}


def _error_example(code: int) -> dict[str, object]:
    _, error_type, message = _ERRORS[code]
    error: dict[str, object] = {"code": code, "type": error_type, "message": message}
    if code == 400:
        error["details"] = [{"field": "limit", "message": "Input should be less than or equal to 100"}]
    return {"success": False, "error": error, "timestamp": "2026-01-01T12:00:00Z"}
