"""The latency-bound stage of ``throughput.py``: 1,000 sends in flight against a provider that
answers in 200 ms, so the bound is 5,000 messages/s, held in several ways (``LATENCY_SETUPS``),
interleaved, each with its own verdict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from harness import Run, median_run, simulator, verdict

LATENCY_BOUND_MS = 200.0
LATENCY_WORKERS = 1000


@dataclass(frozen=True)
class LatencySetup:
    """One way to hold 1,000 sends in flight: processes and rows per claim."""

    processes: int
    batch: int
    jitter_ms: float = 0.0

    @property
    def label(self) -> str:
        """How the verdict names it."""
        workers = LATENCY_WORKERS // self.processes
        label = f"{self.processes} × MESSAGE_MAX_WORKERS={workers}, MESSAGE_BATCH_SIZE={self.batch}"
        return label + (f", provider {LATENCY_BOUND_MS:g} ± {self.jitter_ms:g} ms" if self.jitter_ms else "")


LATENCY_SETUPS = (
    LatencySetup(1, 1000),
    LatencySetup(1, 500),
    LatencySetup(2, 500),
    LatencySetup(1, 1000, jitter_ms=20.0),
)
"""The issue's single process with MESSAGE_MAX_WORKERS=1000, claiming 1,000 rows at once and
500 (each claim turns its rows into messages in one go, and the answers waiting meanwhile
wait longer); the same 1,000 in flight over 2 processes of 500; and the first against a
provider whose time varies by up to ±20 ms around the same 200 (the bound stays 5,000/s)."""


Drain = Callable[..., Awaitable[Run]]
"""The service's drain: ``(sim, messages, *, workers, batch, processes) -> Run``."""


async def run_latency(drain: Drain, *, count: int, repeat: int) -> dict[LatencySetup, list[Run]]:
    """Drain ``count`` messages once per setup per round; return every run by setup."""
    latency: dict[LatencySetup, list[Run]] = {}
    with contextlib.ExitStack() as stack:
        slow = {
            jitter_ms: stack.enter_context(simulator(latency_ms=LATENCY_BOUND_MS, jitter_ms=jitter_ms))
            for jitter_ms in sorted({setup.jitter_ms for setup in LATENCY_SETUPS})
        }
        print(f"latency-bound: {count:,} messages, simulator at {LATENCY_BOUND_MS:g} ms", flush=True)
        for _ in range(repeat):  # interleaved, like the drain rounds
            for setup in LATENCY_SETUPS:
                got = await drain(
                    slow[setup.jitter_ms],
                    count,
                    workers=LATENCY_WORKERS // setup.processes,
                    batch=setup.batch,
                    processes=setup.processes,
                )
                latency.setdefault(setup, []).append(got)
    return latency


def latency_section(
    latency: Mapping[LatencySetup, list[Run]], zero_ms: Mapping[int, Run | None]
) -> tuple[list[str], list[str]]:
    """Return the section's table and its verdicts; ``zero_ms``: the 0 ms drain by processes."""
    bound = LATENCY_WORKERS / (LATENCY_BOUND_MS / 1000)
    lines = ["", f"## Latency-bound: simulator at {LATENCY_BOUND_MS:g} ms, 1,000 in flight", ""]
    lines += [
        "| processes × MESSAGE_MAX_WORKERS | MESSAGE_BATCH_SIZE | provider | messages | messages/s"
        " | share of the 5,000/s bound | share of the same processes' 0 ms drain | CPU-s per 1,000 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for setup, each in latency.items():
        got = median_run(each)
        drained = zero_ms.get(setup.processes)
        of_drain = f"{got.rate / drained.rate:.0%}" if drained else "—"
        lines.append(
            f"| {setup.processes} × {LATENCY_WORKERS // setup.processes} | {setup.batch:,}"
            f" | {LATENCY_BOUND_MS:g} ± {setup.jitter_ms:g} ms | {got.messages:,} | {got.rate:,.0f}"
            f" | {got.rate / bound:.0%} | {of_drain} | {got.cpu_per_1000:.3f} |"
        )
        share = got.rate / bound
        verdicts.append(
            verdict(f"latency-bound ≥ 90% of 5,000/s, {setup.label}", share >= 0.9, f"{share:.0%}")
        )
    return lines, verdicts
