"""Helpers to run the real ``sms-dispatch`` process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

EXE = Path(sys.executable).parent / "sms-dispatch"


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Return an environment with none of the service's variables but ``extra``."""
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}}
    return {**keep, "PYTHONUNBUFFERED": "1", **extra}


class ServiceProcess:
    """A running ``sms-dispatch`` command whose output goes to a file."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.log_path = cwd / f"service-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(EXE), *args], env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        """Return what the process printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout_s: float = 20) -> int:
        """Send SIGTERM and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()
        return code


def run_cli(args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``sms-dispatch`` to completion and return its result."""
    return subprocess.run(
        [str(EXE), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


async def wait_until_healthy(base_url: str, service: ServiceProcess, timeout_s: float = 20) -> None:
    """Poll /health until it answers 200, failing with the process output if it dies."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                pytest.fail(f"service exited with {service.proc.returncode}:\n{service.output()}")
            try:
                if (await http.get(f"{base_url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"service not healthy after {timeout_s}s:\n{service.output()}")


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Collect started processes and make sure none outlives its test."""
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
        service.terminate(timeout_s=10)  # reaps it and closes its log (a failed test left it open)
