"""Request bodies read as the Go service reads them, with Go's ``encoding/json`` decoder.

The Go service's clients (and its README's examples, typed as ``curl -d '{"action": "stop"}'``,
which sends ``application/x-www-form-urlencoded``) rely on three things that FastAPI refuses:

- the body is JSON whatever the ``Content-Type`` says (``GoJsonRoute``);
- field names match in any case: ``"Action"`` is ``action`` (``GoJsonModel``; when a name comes
  twice in different cases, the last one wins, as in Go);
- unknown fields are ignored.

Anything else is still a 400 naming the problem: a body that is not JSON, not an object, a
missing field or a value out of range. One exception keeps the leniency from becoming a way
in: a browser page on another origin can send a form (``text/plain`` or urlencoded) without
asking first, so a body that is not declared JSON and comes with an ``Origin`` other than this
host is refused (a page of this origin, such as the dashboard, sends ``application/json``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, model_validator

from sms_dispatch.errors import InvalidInput

_JSON = b"application/json"


class GoJsonModel(BaseModel):
    """A request body whose field names match in any case and whose unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _names_in_any_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # not an object: the model's own check names it
        names = {name.casefold(): name for name in cls.model_fields}
        matched: dict[str, Any] = {}
        for key, value in data.items():
            name = names.get(str(key).casefold())
            if name is not None:
                matched[name] = value  # in document order: the last of a repeated name wins
        return matched


class GoJsonRoute(APIRoute):
    """A route that reads its body as JSON whatever the ``Content-Type`` (see the module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Return FastAPI's handler, handed the request with its body declared as JSON."""
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_as_json(request: Request) -> Response:
            return await handler(_declared_json(request))

        return read_as_json


def _declared_json(request: Request) -> Request:
    """Return ``request`` with ``Content-Type: application/json`` (the same body, headers otherwise)."""
    declared = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared == "application/json" or declared.endswith("+json"):
        return request
    if _from_another_origin(request):
        raise InvalidInput(
            {"Content-Type": "a page of another origin must send the body as application/json"}
        )
    headers = [(name, value) for name, value in request.scope["headers"] if name.lower() != b"content-type"]
    return Request({**request.scope, "headers": [*headers, (b"content-type", _JSON)]}, request.receive)


def _from_another_origin(request: Request) -> bool:
    """Return True when a browser sent the request from a page of another origin than this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-origin request (curl, Go's net/http, ...)
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()
