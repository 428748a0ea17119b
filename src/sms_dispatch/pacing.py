"""The fleet-wide send budget of ``MESSAGE_RATE_LIMIT``, as pure arithmetic (no I/O).

A generic cell rate algorithm (GCRA), the token bucket written as one time: ``paced_until``
is the moment up to which the sends granted so far are paid for at ``rate_per_s``. Taking
``n`` sends moves it ``n / rate_per_s`` later; a take is granted while ``paced_until`` stays
within ``burst_s`` of now. Idle time refills the budget up to ``burst_s`` worth of sends.

One timestamp is the whole state, so the fleet shares it as one column of the scheduler row
(``scheduler_state.paced_until``) updated by compare-and-set: no lock is held, no row per
token is written, and a take costs two statements whatever its size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Take:
    """What a take decided: how many sends were granted and the new ``paced_until``."""

    granted: int
    paced_until: datetime | None


def take(
    paced_until: datetime | None, *, want: int, now: datetime, rate_per_s: float, burst_s: float
) -> Take:
    """Grant up to ``want`` sends at ``now``; ``paced_until`` is the stored state (None: unused)."""
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be greater than zero")
    base = now if paced_until is None or paced_until < now else paced_until
    headroom_s = (now - base).total_seconds() + burst_s
    # A tiny epsilon absorbs float error so that exactly one send's worth of headroom counts.
    available = math.floor(headroom_s * rate_per_s + 1e-9)
    granted = max(0, min(want, available))
    if granted == 0:
        return Take(0, paced_until)
    return Take(granted, base + timedelta(seconds=granted / rate_per_s))


def give_back(
    paced_until: datetime | None, *, count: int, now: datetime, rate_per_s: float
) -> datetime | None:
    """Return ``count`` unused sends to the budget (never earlier than ``now``)."""
    if paced_until is None or count <= 0:
        return paced_until
    return max(paced_until - timedelta(seconds=count / rate_per_s), now)
