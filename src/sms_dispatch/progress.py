"""Continuous mode's progress line: what was claimed, sent, retried and failed, once a second.

Continuous mode logs each send at DEBUG only; this summary is what an operator reads at INFO.
"""

from __future__ import annotations

import time

from sms_dispatch.logs import get_logger
from sms_dispatch.outcomes import BatchReport

log = get_logger("sms_dispatch.pump")

SUMMARY_EVERY_S = 1.0


class Progress:
    """Tallies into ``current`` and logs them (``sending``) at most every ``SUMMARY_EVERY_S``."""

    def __init__(self) -> None:
        self.current = BatchReport()
        """The tallies of the period; the same object for the pump's life (the recorder counts into it)."""
        self._since = time.monotonic()
        self.last_report: BatchReport | None = None
        """The last summary logged that had anything in it."""

    def log(self, *, force: bool = False) -> None:
        """Log the tallies and start new ones, if a period has passed (or ``force``)."""
        now = time.monotonic()
        elapsed_s = now - self._since
        if not (force or elapsed_s >= SUMMARY_EVERY_S):
            return
        if self.current.claimed or self.current.rescued or self.current.delivered or self.current.failed:
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
        self.current.take()
        self._since = now


__all__ = ["Progress"]
