"""``MESSAGE_RATE_LIMIT`` as continuous mode spends it: chunks of the fleet-wide send budget.

Before each claim the pump takes at most ``RATE_CHUNK_S`` worth of sends from the budget the
fleet shares (``pacing.py`` is the arithmetic, ``ControlStore.take_send_budget`` the storage);
what a short claim did not use goes back. Without a limit every take is granted in full and
nothing is stored.
"""

from __future__ import annotations

import math

from sms_dispatch.ports import Clock, ControlStore

RATE_BURST_S = 1.0
"""The fleet may send this many seconds' worth of its rate at once after a pause."""
RATE_CHUNK_S = 0.1
"""A claim under a rate limit takes at most this many seconds' worth of the rate."""
MIN_WAIT_S = 0.005
MAX_WAIT_S = 1.0


class RateBudget:
    """The pump's share of the fleet-wide budget: take before a claim, give back the unused."""

    def __init__(
        self, *, control: ControlStore, clock: Clock, rate_per_s: float | None, claim_size: int
    ) -> None:
        self._control = control
        self._clock = clock
        self.rate_per_s = rate_per_s
        self._claim_size = claim_size

    async def take(self, want: int) -> int:
        """Return how many of ``want`` sends may be claimed now (all of them without a limit)."""
        if self.rate_per_s is None:
            return want
        chunk = min(want, max(1, math.ceil(self.rate_per_s * RATE_CHUNK_S)))
        return await self._control.take_send_budget(
            chunk, now=self._clock.now(), rate_per_s=self.rate_per_s, burst_s=RATE_BURST_S
        )

    async def give_back(self, unused: int) -> None:
        """Return sends that were granted but not claimed (a short claim)."""
        if self.rate_per_s is None or unused <= 0:
            return
        await self._control.return_send_budget(unused, now=self._clock.now(), rate_per_s=self.rate_per_s)

    def wait_s(self) -> float:
        """How long to wait after a take granted nothing: about one chunk's worth of time."""
        rate = self.rate_per_s or 1.0
        chunk = min(self._claim_size, math.ceil(rate * RATE_CHUNK_S))
        return min(max(chunk / rate, MIN_WAIT_S), MAX_WAIT_S)


__all__ = ["RATE_BURST_S", "RATE_CHUNK_S", "RateBudget"]
