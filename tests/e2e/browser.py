"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright, for browser tests.

Every page records each request it makes and each console error. Requests to any host but
127.0.0.1 are aborted, as on a machine with no internet, and recorded, so a test can assert
there were none.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import ConsoleMessage, Page, Route, ViewportSize, async_playwright, expect

from tests.conftest import IN_CI
from tests.e2e.conftest import ServiceProcess, clean_env, free_port, wait_until_healthy

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# Without the background-networking flags Chromium phones home at start, which a closed
# network refuses; --headless and --no-sandbox let it run as root in CI.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOST = "127.0.0.1"
SCREENSHOTS = Path(__file__).parent / "screenshots"
VIEWPORT = ViewportSize(width=1280, height=900)
WAIT_MS = 15_000
"""How long an action or an expectation waits: generous, for a loaded 2-core machine."""


def require_chromium() -> None:
    """Skip (fail under CI=true) when Debian's Chromium is not installed."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


@dataclass
class PageWatch:
    """What a page did: every request URL and every console error or uncaught exception."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Return the requests to any host but 127.0.0.1 (inline ``data:`` URLs aside)."""
        return [url for url in self.requests if not _is_local(url)]

    def paths(self) -> set[str]:
        """Return the paths requested (without query strings)."""
        return {urlsplit(url).path for url in self.requests}

    def on_console(self, message: ConsoleMessage) -> None:
        """Record a console message of type error."""
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "data" or parts.hostname == LOCAL_HOST


@asynccontextmanager
async def open_page() -> AsyncIterator[tuple[Page, PageWatch]]:
    """Open a page in a fresh headless Chromium; yield it and what it records."""
    require_chromium()
    expect.set_options(timeout=WAIT_MS)
    watch = PageWatch()

    async def only_local(route: Route) -> None:
        if _is_local(route.request.url):
            await route.continue_()
        else:
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport=VIEWPORT)
            await context.route("**/*", only_local)
            context.set_default_timeout(WAIT_MS)
            page = await context.new_page()
            page.on("request", lambda request: watch.requests.append(request.url))
            page.on("console", watch.on_console)
            page.on("pageerror", lambda error: watch.console_errors.append(f"uncaught: {error}"))
            yield page, watch
            await context.close()
        finally:
            await browser.close()


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot (of the whole page, or what the window shows) under tests/e2e/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


@asynccontextmanager
async def running_service(
    tmp_path: Path, processes: list[ServiceProcess], env: Mapping[str, str]
) -> AsyncIterator[str]:
    """Run ``sms-dispatch serve`` with ``env`` (SQLite in ``tmp_path`` unless told); yield its URL."""
    port = free_port()
    service = ServiceProcess(["serve"], clean_env({**env, "API_PORT": str(port)}), tmp_path)
    processes.append(service)
    base_url = f"http://{LOCAL_HOST}:{port}"
    await wait_until_healthy(base_url, service)
    yield base_url
    assert service.terminate() == 0, service.output()
