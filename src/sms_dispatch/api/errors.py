"""The one place where errors become HTTP answers, all in the envelope."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sms_dispatch.api.envelope import ErrorBody, ErrorEnvelope, FieldError
from sms_dispatch.api.middleware import LOGGED_ERROR
from sms_dispatch.api.outages import ApiOutages
from sms_dispatch.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    SmsDispatchError,
)
from sms_dispatch.logs import get_logger

log = get_logger(__name__)

_STATUS_OF: list[tuple[type[SmsDispatchError], int, str]] = [
    (InvalidInput, 400, "VALIDATION_ERROR"),
    (NotFound, 404, "NOT_FOUND"),
    (Conflict, 409, "CONFLICT"),
    (DependencyUnavailable, 503, "DEPENDENCY_UNAVAILABLE"),
]
_HTTP_TYPES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def error_response(
    status: int,
    error_type: str,
    message: str,
    details: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Return an error envelope as a JSON response: ``code`` is the status, ``type`` its name."""
    body = ErrorEnvelope(error=ErrorBody(code=status, type=error_type, message=message, details=details))
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "path", "body", "header")]
    return ".".join(parts) or ("body" if loc and loc[0] == "body" else "request")


def _explain(error: dict[str, Any]) -> FieldError:
    kind = error.get("type", "")
    if kind == "json_invalid":
        return FieldError(field="body", message="the body is not valid JSON")
    if kind == "missing" and tuple(error.get("loc", ())) == ("body",):
        return FieldError(field="body", message="a JSON body is required")
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return FieldError(field=_field_name(tuple(error["loc"])), message="expected a JSON object")
    return FieldError(field=_field_name(tuple(error["loc"])), message=str(error["msg"]))


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_explain(dict(e)) for e in exc.errors()]
    message = "; ".join(f"{d.field}: {d.message}" for d in details)
    return error_response(400, "VALIDATION_ERROR", message, details)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = _HTTP_TYPES.get(exc.status_code, "ERROR")
    message = str(exc.detail)
    headers = getattr(exc, "headers", None)
    if exc.status_code == 404 and message == "Not Found":
        message = "no such route"
    elif exc.status_code == 405:
        message = "method not allowed on this route"
        allowed = _allowed_methods(request, (headers or {}).get("Allow"))
        headers = {**(headers or {}), **({"Allow": allowed} if allowed is not None else {})}
    return error_response(exc.status_code, error_type, message, headers=headers)


def _allowed_methods(request: Request, routed: str | None) -> str | None:
    """Return every documented method of the request's path (Starlette's 405 names one route's).

    When several path templates fit (``/messages/retry`` fits ``/messages/{message_id}`` too), the
    most literal one is the path's own. Paths outside the document keep Starlette's answer.
    """
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    path = request.url.path
    fits = [t for t in paths if re.fullmatch(re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(t)), path)]
    if not fits:
        return routed
    own = min(fits, key=lambda template: (template.count("{"), template))
    methods = {method.upper() for method in paths[own]}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SmsDispatchError)
    if isinstance(exc, DependencyUnavailable):
        # An outage, not a bug: one line when it starts (the OutageLog), no traceback per request.
        outages: ApiOutages = request.app.state.outages
        outages.failed(exc.dependency, exc, path=request.url.path)
    for kind, status, error_type in _STATUS_OF:
        if isinstance(exc, kind):
            details = None
            if isinstance(exc, InvalidInput):
                details = [FieldError(field=f, message=m) for f, m in exc.fields.items()]
            return error_response(status, error_type, exc.message, details)
    log.error("unmapped error", error=exc.message)
    return error_response(500, "INTERNAL_ERROR", "internal error")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", path=request.url.path, exc_info=exc)
    # Starlette raises the error again after this answer, for the server to log a second
    # traceback; the request middleware drops what was logged here (``middleware.py``).
    setattr(request.state, LOGGED_ERROR, exc)
    return error_response(500, "INTERNAL_ERROR", "internal error; see the service log")


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the envelope."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(SmsDispatchError, _on_domain)
    app.add_exception_handler(Exception, _on_unexpected)
