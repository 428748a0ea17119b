"""The progress line of `seed`: the rate column."""

from __future__ import annotations

from rich.progress import Progress

from sms_dispatch.cli_progress import RateColumn


def test_the_rate_column_shows_rows_per_second() -> None:
    """After 30,000 rows in 2 s (an injected clock) the column reads 15,000 rows/s."""
    now = [100.0]
    progress = Progress(RateColumn(), get_time=lambda: now[0], disable=True)
    task_id = progress.add_task("seed", total=100_000)
    progress.advance(task_id, 0)
    now[0] += 2.0
    progress.advance(task_id, 30_000)
    task = progress.tasks[0]
    assert RateColumn().render(task).plain == "15,000 rows/s"


def test_the_rate_column_waits_for_a_rate() -> None:
    """Before any row the column shows a dash."""
    progress = Progress(RateColumn(), disable=True)
    progress.add_task("seed", total=10)
    assert RateColumn().render(progress.tasks[0]).plain == "- rows/s"
