"""More cores: run several dispatcher processes on one machine (``worker --processes N``).

Each child is a plain ``sms-dispatch worker`` with its own ``INSTANCE_NAME`` (the parent's
name plus ``-1``, ``-2``, ...), coordinated with the others through the database exactly like
separate instances: claims with ``FOR UPDATE SKIP LOCKED``, one switch, one send budget. The
parent only supervises: SIGTERM or SIGINT to it is passed to every child, which drains; if a
child dies on its own, the parent stops the others and exits with its code, so whatever
supervises the parent restarts the whole group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from sms_dispatch.config import Settings, fitted_instance_name
from sms_dispatch.logs import get_logger

log = get_logger(__name__)

POLL_S = 0.2
STOP_TIMEOUT_S = 60.0


def sqlite_refusal(settings: Settings, processes: int) -> str | None:
    """Return why ``processes`` dispatcher processes cannot run on these settings, or None."""
    if processes > 1 and settings.sqlalchemy_url().get_backend_name() == "sqlite":
        return (
            f"--processes {processes} needs PostgreSQL: SQLite has one writer at a time, so only one"
            " dispatcher process may use it (set DATABASE_URL or DB_HOST, or use --processes 1)"
        )
    return None


def child_command() -> list[str]:
    """Return the command that runs one dispatcher process."""
    return [sys.executable, "-m", "sms_dispatch.cli", "worker"]


def child_name(parent: str, number: int) -> str:
    """Return child ``number``'s instance name: the parent's, cut so that ``-<number>`` fits."""
    return fitted_instance_name(parent, f"-{number}")


def run_worker_processes(settings: Settings, processes: int, command: Sequence[str] | None = None) -> int:
    """Run ``processes`` dispatcher children until a signal or a child's death; return the exit code."""
    argv = list(command or child_command())
    children: list[subprocess.Popen[bytes]] = []
    for number in range(1, processes + 1):
        env = {**os.environ, "INSTANCE_NAME": child_name(settings.instance_name, number)}
        children.append(subprocess.Popen(argv, env=env))  # noqa: S603 - our own interpreter and module
    log.info("dispatcher processes started", processes=processes, pids=[c.pid for c in children])
    stopping = False

    def stop_all(signum: int | None = None, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(child.poll() is None for child in children):
            if not stopping and any(child.poll() is not None for child in children):
                dead = next(child for child in children if child.poll() is not None)
                log.error(
                    "a dispatcher process exited; stopping the others", pid=dead.pid, code=dead.returncode
                )
                stop_all()
            time.sleep(POLL_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    codes = [child.returncode for child in children]
    log.info("dispatcher processes stopped", codes=codes)
    return max((abs(code) for code in codes), default=0)
