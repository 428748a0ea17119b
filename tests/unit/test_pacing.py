"""The send budget's arithmetic (GCRA): grants, refill, burst cap, give-back, waiting time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_dispatch import pacing

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_take_moves_the_budget_by_its_cost() -> None:
    """Granting n sends at rate r moves ``paced_until`` n/r seconds past now."""
    decision = pacing.take(None, want=5, now=NOW, rate_per_s=10, burst_s=1)
    assert decision == pacing.Take(5, NOW + timedelta(seconds=0.5))


def test_a_take_is_cut_to_what_the_burst_allows() -> None:
    """A budget already paid 0.8 s ahead grants only the remaining 0.2 s of the burst."""
    decision = pacing.take(NOW + timedelta(seconds=0.8), want=100, now=NOW, rate_per_s=10, burst_s=1)
    assert decision.granted == 2


def test_an_exhausted_budget_grants_nothing_and_keeps_its_state() -> None:
    """No headroom: nothing granted, state unchanged."""
    spent = NOW + timedelta(seconds=1)
    assert pacing.take(spent, want=1, now=NOW, rate_per_s=10, burst_s=1) == pacing.Take(0, spent)


def test_giving_back_never_goes_before_now() -> None:
    """Returning more than was taken leaves the budget at now, not in the past."""
    assert pacing.give_back(NOW + timedelta(seconds=0.1), count=50, now=NOW, rate_per_s=10) == NOW


def test_a_rate_of_zero_is_refused() -> None:
    """A non-positive rate is a programming error."""
    with pytest.raises(ValueError, match="rate_per_s"):
        pacing.take(None, want=1, now=NOW, rate_per_s=0, burst_s=1)
