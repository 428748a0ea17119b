"""The ``DeliveryObserver`` that ignores everything: the core's default when no metrics listen."""

from __future__ import annotations

from sms_dispatch.domain import Outcome


class NullDeliveryObserver:
    """A ``DeliveryObserver`` that does nothing (for the CLI's one-off runs and for tests)."""

    def send_finished(self, *, outcome: Outcome, http_status: int | None, duration_s: float) -> None:
        """Ignore one provider call."""

    def batch_finished(self, *, size: int, duration_s: float) -> None:
        """Ignore one batch."""
