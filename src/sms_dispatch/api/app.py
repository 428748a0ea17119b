"""``create_app``: the FastAPI application over already-built services."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from sms_dispatch import __version__
from sms_dispatch.api.envelope import error_responses
from sms_dispatch.api.errors import install_error_handlers
from sms_dispatch.api.middleware import HeadAsGetMiddleware, RequestContextMiddleware
from sms_dispatch.api.outages import ApiOutages, DatabaseAnswersMiddleware
from sms_dispatch.api.routes import actions, dashboard, docs, messages, meta, ops, scheduler
from sms_dispatch.api.security import keyring_for
from sms_dispatch.bootstrap import Services

DESCRIPTION = """
Sends the SMS messages waiting in the database through a webhook SMS provider, on its own
schedule (by default 2 messages every 2 minutes), and lets you control and inspect it.

Every JSON answer uses one envelope: `{"success": true, "data": ..., "timestamp": ...}` or
`{"success": false, "error": {"code": 400, "type": "VALIDATION_ERROR", "message": ...}, "timestamp": ...}`:
`code` is the HTTP status as an integer (as the Go service sends it), `type` a stable name.

When the service has `API_KEYS`, send a key as `Authorization: Bearer <key>` or `X-API-Key: <key>`:
reading needs a `read` or `operate` key, changing anything an `operate` key. `/`, `/health`,
`/ping`, `/ready`, `/metrics`, this documentation and the dashboard page stay open.
Every answer carries `X-Request-ID` (yours when you send a sane one).
"""


def create_app(services: Services) -> FastAPI:
    """Return the HTTP API over ``services``."""
    app = _routed_app()
    app.state.services = services
    app.state.keyring = keyring_for(services.settings)
    app.state.outages = outages = ApiOutages()
    install_error_handlers(app)
    app.mount("/swagger/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-assets")
    # Outside Starlette's own error middleware, so a 500 answer gets its request id and access line.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestContextMiddleware(  # type: ignore[method-assign]
        HeadAsGetMiddleware(DatabaseAnswersMiddleware(build_stack(), outages))
    )
    return app


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document of the API, built from its routes alone (no services needed)."""
    return _routed_app().openapi()


def _routed_app() -> FastAPI:
    """Return the application with every route and its OpenAPI document, nothing wired yet."""
    app = FastAPI(
        title="sms-dispatch",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    for module in (meta, ops, messages, actions, scheduler, dashboard, docs):
        # Any route can fail unexpectedly: the 500 envelope is documented everywhere.
        app.include_router(module.router, responses=error_responses(500))
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    return app


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """Build the spec once, without FastAPI's 422 answers: bad input here is a 400 envelope."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        schemas = spec.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = spec
    return app.openapi_schema
