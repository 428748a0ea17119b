"""Swagger UI at /swagger/, served from the packaged assets (works with no internet)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

ASSETS = "/swagger/assets"

router = APIRouter(include_in_schema=False)


@router.get("/swagger")
async def swagger_redirect() -> RedirectResponse:
    """Send /swagger to /swagger/."""
    return RedirectResponse("/swagger/")


@router.get("/swagger/")
@router.get("/swagger/index.html")
async def swagger_ui() -> HTMLResponse:
    """Render Swagger UI for the spec at /swagger/doc.json."""
    return get_swagger_ui_html(
        openapi_url="/swagger/doc.json",
        title="sms-dispatch API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )


@router.get("/swagger/doc.json")
async def swagger_spec(request: Request) -> JSONResponse:
    """Serve the OpenAPI document (the Go service's path for it)."""
    spec: dict[str, Any] = request.app.openapi()
    return JSONResponse(spec)
