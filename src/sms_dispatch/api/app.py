"""``create_app``: the FastAPI application over already-built services."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from sms_dispatch import __version__
from sms_dispatch.api.errors import install_error_handlers
from sms_dispatch.api.routes import docs, messages, meta, scheduler
from sms_dispatch.bootstrap import Services

DESCRIPTION = """
Sends the SMS messages waiting in the database through a webhook SMS provider, on its own
schedule (by default 2 messages every 2 minutes), and lets you control and inspect it.

Every JSON answer uses one envelope: `{"success": true, "data": ..., "timestamp": ...}` or
`{"success": false, "error": {"code": ..., "message": ...}, "timestamp": ...}`.
"""


def create_app(services: Services) -> FastAPI:
    """Return the HTTP API over ``services``."""
    app = FastAPI(
        title="sms-dispatch",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    install_error_handlers(app)
    for module in (meta, messages, scheduler, docs):
        app.include_router(module.router)
    app.mount("/swagger/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-assets")
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
