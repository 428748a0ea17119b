"""The provider simulator's knobs (``SimulatorConfig``), each checked when it is set.

Faults are drawn with one random number per request, so each rate is exact on its own:
``hang_rate + reset_rate + error_rate + broken_body_rate`` must not exceed 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_RATES = ("error_rate", "hang_rate", "reset_rate", "broken_body_rate")


def _number(low: float, high: float = math.inf, *, whole: bool = False) -> Callable[[Any], bool]:
    kinds = int if whole else int | float
    return lambda v: isinstance(v, kinds) and not isinstance(v, bool) and low <= v <= high


def _nullable(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{rate: (_number(0, 1), "a number from 0 to 1") for rate in _RATES},
    "latency_ms": (_number(0), "a number >= 0"),
    "hang_s": (_number(0), "a number >= 0"),
    "retry_after_s": (_nullable(_number(0)), "null or a number >= 0"),
    "error_status": (_number(400, 599, whole=True), "an integer from 400 to 599"),
    "auth_key": (_nullable(lambda v: isinstance(v, str)), "null or a string"),
    "seed": (_nullable(_number(-math.inf, whole=True)), "null or an integer"),
    "record_limit": (_number(1, whole=True), "an integer >= 1"),
}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The simulator's knobs; construction validates them (``ValueError`` says which)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    retry_after_s: float | None = None
    hang_rate: float = 0.0
    hang_s: float = 30.0
    reset_rate: float = 0.0
    broken_body_rate: float = 0.0
    auth_key: str | None = None
    seed: int | None = None
    record_limit: int = 10_000

    def __post_init__(self) -> None:
        faults = [
            f"{name} must be {what}" for name, (ok, what) in _RULES.items() if not ok(getattr(self, name))
        ]
        if not faults and sum(getattr(self, name) for name in _RATES) > 1:
            faults.append(f"{' + '.join(_RATES)} must not exceed 1")
        if faults:
            raise ValueError("; ".join(faults))

    def to_dict(self) -> dict[str, Any]:
        """Return the knobs as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> SimulatorConfig:
        """Return a copy with ``changes`` applied; ``ValueError`` on unknown or bad knobs."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown knobs: {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)
