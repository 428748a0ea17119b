"""The dashboard in headless Chromium against the real service (SQLite, provider simulator)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from sms_dispatch.simulator import SimulatorConfig, start_simulator
from tests.e2e.browser import open_page, running_service, screenshot
from tests.e2e.conftest import ServiceProcess

pytestmark = pytest.mark.timeout(120)

QUIET = {"SCHEDULER_INTERVAL": "2m", "MESSAGE_BATCH_SIZE": "2"}
"""A schedule that sends the first batch at once, then nothing more during a test."""
BUSY = {"SCHEDULER_INTERVAL": "200ms", "MESSAGE_BATCH_SIZE": "10", "SEED_ON_FIRST_RUN": "0"}
"""A schedule that sends whatever is due within a fraction of a second."""


async def api(base_url: str, method: str, path: str, body: Any = None) -> Any:
    """Call the API and return the envelope's data (failing the test on an error answer)."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code < 300, response.text
    return response.json()["data"]


async def eventually(check: Any, timeout_s: float = 15.0) -> Any:
    """Await ``check()`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            assert result, f"still {result!r} after {timeout_s}s"
            return result
        await asyncio.sleep(0.1)


async def load_dashboard(page: Page, base_url: str) -> None:
    """Open /dashboard and wait until its first refresh has drawn every part."""
    await page.goto(f"{base_url}/dashboard")
    await expect(page.locator("#scheduler-state")).not_to_have_attribute("data-state", "unknown")
    for part in ("#sent-rows", "#failed-rows"):
        await expect(page.locator(part)).not_to_contain_text("loading…")
    await expect(page.locator("#count-PENDING")).not_to_have_text("–")


async def test_dashboard_loads_with_no_console_error_and_no_other_host(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """The page and its data load from 127.0.0.1 alone, with no console error, and show the counts."""
    async with running_service(tmp_path, processes, QUIET) as base_url, open_page() as (page, watch):
        await api(base_url, "POST", "/scheduler", {"action": "stop"})
        await load_dashboard(page, base_url)
        stats = await api(base_url, "GET", "/stats")
        for status, count in stats["counts"].items():
            await expect(page.locator(f"#count-{status}")).to_have_text(str(count))
        await expect(page.locator("#sent-rows tr[data-id]")).to_have_count(stats["counts"]["SUCCESS"])
        await expect(page.locator("#banner")).to_be_hidden()
        # The embedded default sends to the built-in simulator, and the page says so.
        assert stats["scheduler"]["providerSimulator"] is True
        await expect(page.locator("#simulator-notice")).to_be_visible()
        await expect(page.locator("#simulator-notice")).to_contain_text("nothing is really delivered")
        await screenshot(page, "dashboard")
    assert watch.foreign_requests() == []
    assert watch.console_errors == []
    assert {"/dashboard", "/dashboard/app.js", "/dashboard/style.css", "/stats"} <= watch.paths()


async def test_dashboard_refreshes_by_itself(tmp_path: Path, processes: list[ServiceProcess]) -> None:
    """A message created elsewhere shows in the counts without reloading the page."""
    async with running_service(tmp_path, processes, QUIET) as base_url, open_page() as (page, _):
        await api(base_url, "POST", "/scheduler", {"action": "stop"})
        await load_dashboard(page, base_url)
        pending = (await api(base_url, "GET", "/stats"))["counts"]["PENDING"]
        await expect(page.locator("#count-PENDING")).to_have_text(str(pending))
        await api(base_url, "POST", "/messages", {"to": "+905551111111", "content": "from elsewhere"})
        await expect(page.locator("#count-PENDING")).to_have_text(str(pending + 1))


async def test_stop_and_start_buttons_switch_the_scheduler(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """Clicking Stop stops the scheduler GET /scheduler reports on; clicking Start starts it again."""
    async with running_service(tmp_path, processes, QUIET) as base_url, open_page() as (page, watch):
        await load_dashboard(page, base_url)
        toggle = page.locator("#scheduler-toggle")
        await expect(toggle).to_have_text("Stop")
        await toggle.click()
        await expect(page.locator("#scheduler-state")).to_have_text("stopped")
        assert (await api(base_url, "GET", "/scheduler"))["running"] is False
        await expect(toggle).to_have_text("Start")
        await screenshot(page, "dashboard-stopped")
        await toggle.click()
        await expect(page.locator("#scheduler-state")).not_to_have_text("stopped")
        assert (await api(base_url, "GET", "/scheduler"))["running"] is True
    assert watch.console_errors == []


async def test_created_message_appears_in_counts_then_in_sent_list(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """A message queued with the form is counted as pending, then listed as sent once started."""
    async with running_service(tmp_path, processes, BUSY) as base_url, open_page() as (page, watch):
        await api(base_url, "POST", "/scheduler", {"action": "stop"})
        await load_dashboard(page, base_url)
        await expect(page.locator("#count-PENDING")).to_have_text("0")
        await page.fill("#create-to", "+905551234567")
        await page.fill("#create-content", "Hello from the dashboard")
        await page.click("#create-form button[type=submit]")
        await expect(page.locator("#create-result")).to_have_text("Queued for +905551234567")
        await expect(page.locator("#count-PENDING")).to_have_text("1")
        await expect(page.locator("#create-to")).to_have_value("")
        await page.click("#scheduler-toggle")
        sent_row = page.locator("#sent-rows tr", has_text="Hello from the dashboard")
        await expect(sent_row).to_contain_text("+905551234567")
        await expect(page.locator("#count-SUCCESS")).to_have_text("1")
        await screenshot(page, "dashboard-created-and-sent")
    assert watch.console_errors == []


async def test_invalid_message_shows_each_field_error_inline(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """The 400 envelope's field errors appear under their inputs, and nothing is queued."""
    async with running_service(tmp_path, processes, BUSY) as base_url, open_page() as (page, _):
        await load_dashboard(page, base_url)
        await page.fill("#create-to", "5551234567")
        await page.fill("#create-content", "   ")
        await page.click("#create-form button[type=submit]")
        await expect(page.locator("#create-to-error")).to_contain_text("international format")
        await expect(page.locator("#create-content-error")).to_contain_text("must not be empty")
        await expect(page.locator("#create-to")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#create-to")).to_have_value("5551234567")
        await screenshot(page, "dashboard-form-errors")
        assert sum((await api(base_url, "GET", "/stats"))["counts"].values()) == 0


async def test_retry_button_sends_a_failed_message_again(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """A message the provider refused is listed with its error; Retry queues it and it is sent."""
    refusing = SimulatorConfig(error_rate=1.0, error_status=403)
    async with start_simulator(refusing) as simulator:
        env = {**BUSY, "SMS_PROVIDER_URL": simulator.url}
        async with running_service(tmp_path, processes, env) as base_url, open_page() as (page, watch):
            created = await api(
                base_url, "POST", "/messages", {"to": "+905559876543", "content": "refused once"}
            )

            async def failed() -> bool:
                message = await api(base_url, "GET", f"/messages/{created['id']}")
                return bool(message["status"] == "FAILED")

            await eventually(failed)
            await load_dashboard(page, base_url)
            await expect(page.locator("#simulator-notice")).to_be_hidden()  # a provider URL was given
            row = page.locator(f"#failed-rows tr[data-id='{created['id']}']")
            await expect(row).to_contain_text("403")
            await expect(page.locator("#count-FAILED")).to_have_text("1")
            await screenshot(page, "dashboard-failed")

            simulator.config = SimulatorConfig()
            await row.locator("button.retry").click()
            await expect(row).to_have_count(0)
            await expect(page.locator("#sent-rows tr", has_text="refused once")).to_have_count(1)
            message = await api(base_url, "GET", f"/messages/{created['id']}")
            assert message["status"] == "SUCCESS"
            await screenshot(page, "dashboard-retried")
    assert watch.console_errors == []


async def test_page_asks_for_an_api_key_and_then_uses_it(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """With API_KEYS set the page still loads, says a key is needed, and works once one is saved."""
    operate_key = "dashboard-test-operate-key-0123456789"
    env = {**QUIET, "API_KEYS": f"{operate_key}:operate,dashboard-test-read-key-0123456789:read"}
    async with running_service(tmp_path, processes, env) as base_url, open_page() as (page, _):
        await page.goto(f"{base_url}/dashboard")
        await expect(page.locator("#banner")).to_contain_text("needs a key")
        await expect(page.locator("#count-PENDING")).to_have_text("–")
        await screenshot(page, "dashboard-needs-key")
        await page.fill("#api-key", operate_key)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#banner")).to_be_hidden()
        await expect(page.locator("#count-PENDING")).not_to_have_text("–")
        await page.click("#scheduler-toggle")
        await expect(page.locator("#scheduler-state")).to_have_text("stopped")
        await page.reload()
        await expect(page.locator("#scheduler-toggle")).to_have_text("Start")
        assert await page.evaluate("localStorage.getItem('sms-dispatch.apiKey')") == operate_key
