"""The progress line of long CLI work (``seed``): a bar, rows done of all, the rate, time left."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Rows per second, over the last seconds of work (all of it once finished)."""

    def render(self, task: Task) -> Text:
        """Return the rate as ``12,345 rows/s`` (a dash until there is one)."""
        speed = task.finished_speed or task.speed
        return Text("- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


class SeedProgress:
    """Advances the progress line and keeps the time the work took."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task("seed", total=total)
        self._started = time.perf_counter()
        self.elapsed_s = 0.0

    def advance(self, rows: int) -> None:
        """Count ``rows`` more as done."""
        self._progress.advance(self._task, rows)
        self.elapsed_s = time.perf_counter() - self._started


@contextmanager
def seed_progress(total: int) -> Iterator[SeedProgress]:
    """Show a progress line for ``total`` rows on standard error (left in place on a terminal)."""
    columns = (TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=not console.is_terminal) as progress:
        yield SeedProgress(progress, total)
