"""A process under measurement (the service or a peer) and the service's environment in the
benchmarks: continuous mode against the simulator, the benchmarks' Redis and database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness import AUTH_KEY, Simulator, redis_url


class Contender:
    """A process under measurement that says when it is ready (a line on stdout or stderr)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], *, ready: str, ready_count: int = 1):
        self.log_path = (
            Path(tempfile.gettempdir()) / f"{Path(args[0]).name}-{os.getpid()}-{time.monotonic_ns()}.log"
        )
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(args),
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._ready = ready
        self._ready_count = ready_count

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until the readiness line was printed ``ready_count`` times."""
        deadline = time.monotonic() + timeout_s
        while self.log_path.read_text(errors="replace").count(self._ready) < self._ready_count:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.proc.args} exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.proc.args} not ready after {timeout_s} s:\n{self.output()}")
            await asyncio.sleep(0.05)

    def go(self) -> None:
        """Tell a peer process to start (sms-dispatch starts by the fleet-wide switch instead)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    async def wait_exit(self, timeout_s: float = 120) -> None:
        """Wait for a peer process to finish on its own (it ends its last cache writes first)."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def output(self) -> str:
        """Return what the process printed."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM the process (its children drain with it) and wait; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
        return code


def service_env(url: str, sim: Simulator, *, workers: int, batch: int) -> dict[str, str]:
    """Return the environment of the real ``sms-dispatch worker`` in continuous mode."""
    return {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url(),
        "SMS_PROVIDER_URL": sim.url,
        "SMS_PROVIDER_KEY": AUTH_KEY,
        "SCHEDULER_INTERVAL": "0",
        "MESSAGE_BATCH_SIZE": str(batch),
        "MESSAGE_MAX_WORKERS": str(workers),
        "APP_ENV": "production",
        "LOG_LEVEL": "INFO",
        "INSTANCE_NAME": "bench",
    }
