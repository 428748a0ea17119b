"""One log line when a dependency goes away and one when it is back, not one per failure.

During a 20 s database outage every request and every tick fails; logging each with its
traceback buried the one fact an operator needs (about 5,600 lines). An ``OutageLog`` per
place that talks to a dependency logs the first failure as a WARNING (what failed, no
traceback), counts the rest quietly, and logs once more, with the count and how long it
lasted, on the first success after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog


def describe(exc: BaseException) -> str:
    """Return ``exc`` as one line: its type and message, the cause's too when it has one."""
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return " ".join(text.split())


class OutageLog:
    """Log the start and the end of an outage of ``dependency`` seen by ``doing``."""

    def __init__(
        self,
        dependency: str,
        doing: str,
        *,
        logger: structlog.stdlib.BoundLogger,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependency = dependency
        self.doing = doing
        self._log = logger
        self._monotonic = monotonic
        self._down_since: float | None = None
        self.failures = 0
        """Failures in the current outage (0 while the dependency answers)."""

    @property
    def down(self) -> bool:
        """Return True between a failure and the next success."""
        return self._down_since is not None

    def failed(self, exc: BaseException, **fields: Any) -> None:
        """Note a failure; the first of an outage is logged (one line), the others only counted."""
        self.failures += 1
        if self._down_since is None:
            self._down_since = self._monotonic()
            self._log.warning(
                f"{self.dependency} unavailable", doing=self.doing, error=describe(exc), **fields
            )

    def succeeded(self, **fields: Any) -> None:
        """Note a success; after an outage, log that the dependency is back (one line)."""
        if self._down_since is None:
            return
        down_s = self._monotonic() - self._down_since
        self._log.info(
            f"{self.dependency} available again",
            doing=self.doing,
            failures=self.failures,
            down_s=round(down_s, 3),
            **fields,
        )
        self._down_since = None
        self.failures = 0


__all__ = ["OutageLog", "describe"]
