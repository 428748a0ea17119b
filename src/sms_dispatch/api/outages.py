"""The API's outage log: one line when a dependency goes away and one when it is back.

A request that meets an unreachable database answers the 503 envelope and is counted by the
dependency's ``OutageLog`` (``observability/outages.py``): the first failure of an outage is
one WARNING line, the rest are counted quietly. The database is back when a route that needs
it (one documenting the 503 answer) succeeds again, or ``/ready`` finds it answering; Redis
is seen by ``/ready`` alone, the only route that asks it.

A request that started before the latest failure says nothing about the database now (it may
have had its rows before the cut), so its success does not end the outage: requests in flight
when the outage begins cannot log it as over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog

log = get_logger(__name__)

DATABASE = "database"
REDIS = "redis"
UNNAMED = "a dependency"
"""The name an outage is logged under when the error did not say which dependency it was."""


class ApiOutages:
    """One ``OutageLog`` per dependency, as the HTTP requests see them."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._logs: dict[str, OutageLog] = {}
        self._last_failure_at: dict[str, float] = {}

    def now(self) -> float:
        """Return the monotonic time a request starts at (for ``answered``)."""
        return self._monotonic()

    def log_of(self, dependency: str) -> OutageLog:
        """Return the outage log of ``dependency``."""
        if dependency not in self._logs:
            self._logs[dependency] = OutageLog(
                dependency, "serving HTTP requests", logger=log, monotonic=self._monotonic
            )
        return self._logs[dependency]

    def failed(self, dependency: str | None, error: BaseException, **fields: Any) -> None:
        """Note that ``dependency`` did not answer a request (logged once per outage)."""
        name = dependency or UNNAMED
        self._last_failure_at[name] = self._monotonic()
        self.log_of(name).failed(error, **fields)

    def answered(self, dependency: str, *, started_at: float, **fields: Any) -> None:
        """Note that ``dependency`` served a request that started at ``started_at``."""
        outage = self._logs.get(dependency)
        if outage is None or not outage.down:
            return
        if started_at < self._last_failure_at.get(dependency, float("-inf")):
            return
        outage.succeeded(**fields)


def database_operations(document: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """Return the (path, METHOD) of every operation that needs the database: those documenting a 503."""
    return frozenset(
        (path, method.upper())
        for path, operations in document.get("paths", {}).items()
        for method, operation in operations.items()
        if "503" in operation.get("responses", {})
    )


class DatabaseAnswersMiddleware:
    """After a database-backed route succeeded (2xx), note that the database answered it."""

    def __init__(self, app: ASGIApp, outages: ApiOutages) -> None:
        self.app = app
        self.outages = outages
        self._operations: frozenset[tuple[str, str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request; on a 2xx from a route that needs the database, end its outage."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = self.outages.now()
        status = 0

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watching)
        if 200 <= status < 300 and self._needs_the_database(scope):
            self.outages.answered(DATABASE, started_at=started_at, path=scope.get("path", ""))

    def _needs_the_database(self, scope: Scope) -> bool:
        # The router left the matched route in the scope (the same dict) while serving.
        path = getattr(scope.get("route"), "path", None)
        if path is None:
            return False
        if self._operations is None:
            self._operations = database_operations(scope["app"].openapi())
        return (path, scope["method"]) in self._operations
