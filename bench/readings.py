"""CPU and memory readings of the processes under measurement: a contender's process tree and
every PostgreSQL server process on the machine."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil


def tree_cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system) of process ``pid`` and its children so far."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def tree_peak_rss_mb(pid: int) -> float:
    """Return the largest peak resident set (VmHWM) among ``pid`` and its children, in MB."""
    try:
        root = psutil.Process(pid)
        pids = [root.pid, *(child.pid for child in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0.0
    peaks = []
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


def postgres_cpu() -> dict[int, float]:
    """Return the CPU seconds PostgreSQL's server processes on this machine have used so far.

    One entry per live process, and one per postmaster (under its negated pid) for the children
    it has already reaped: a backend or an autovacuum worker that ends between two readings is
    counted there, not lost.
    """
    seen = {}
    for process in psutil.process_iter(["name", "cpu_times", "ppid"]):
        times = process.info["cpu_times"]
        if process.info["name"] not in {"postgres", "postmaster"} or times is None:
            continue
        seen[process.pid] = times.user + times.system
        with contextlib.suppress(psutil.Error):
            if psutil.Process(process.info["ppid"]).name() not in {"postgres", "postmaster"}:
                seen[-process.pid] = times.children_user + times.children_system
    return seen


def postgres_cpu_s(before: dict[int, float], after: dict[int, float]) -> float:
    """Return the PostgreSQL CPU seconds between two readings, ended processes included."""
    return sum(after.values()) - sum(before.values())
