"""Continuous mode's progress line: what was claimed, sent, retried and failed, once a second.

Continuous mode logs each send at DEBUG only; this summary is what an operator reads at INFO.
It comes at most once every ``SUMMARY_EVERY_S``, however the sends trickle in, and the last
tallies of a burst are logged once their period ends even if nothing follows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sms_dispatch.logs import get_logger
from sms_dispatch.outcomes import BatchReport

log = get_logger("sms_dispatch.pump")

SUMMARY_EVERY_S = 1.0


class Progress:
    """Tallies into ``current`` and logs them (``sending``) at most every ``every_s``."""

    def __init__(
        self, *, every_s: float = SUMMARY_EVERY_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.current = BatchReport()
        """The tallies of the period; the same object for the pump's life (the recorder counts into it)."""
        self._every_s = every_s
        self._monotonic = monotonic
        self._since = monotonic()
        self.last_report: BatchReport | None = None
        """The last summary logged that had anything in it."""

    @property
    def _has_news(self) -> bool:
        summary = self.current
        return bool(summary.claimed or summary.rescued or summary.delivered or summary.failed)

    def due_in_s(self) -> float | None:
        """Return how long until the tallies are due to be logged; None when there is nothing to log."""
        if not self._has_news:
            return None
        return max(0.0, self._since + self._every_s - self._monotonic())

    def log(self, *, force: bool = False) -> None:
        """Log the tallies and start new ones, if a period has passed (or ``force``: the pump stops)."""
        now = self._monotonic()
        elapsed_s = now - self._since
        if not (force or elapsed_s >= self._every_s):
            return
        if self._has_news:
            summary = self.current.take()
            log.info(
                "sending",
                claimed=summary.claimed,
                delivered=summary.delivered,
                retried=summary.retried,
                failed=summary.failed,
                handed_back=summary.handed_back,
                rescued=summary.rescued,
                per_s=round(summary.delivered / elapsed_s, 1) if elapsed_s > 0 else None,
            )
            self.last_report = summary
        else:
            self.current.take()
        self._since = now


__all__ = ["Progress"]
