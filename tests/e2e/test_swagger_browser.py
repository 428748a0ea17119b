"""Swagger UI in headless Chromium: it renders from the packaged assets with no internet."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.e2e.browser import open_page, running_service, screenshot
from tests.e2e.conftest import ServiceProcess

pytestmark = pytest.mark.timeout(120)


async def test_swagger_ui_renders_the_operations_from_local_assets(
    tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """/swagger/ draws the operations list, /messages/sent included, asking no other host."""
    env = {"SCHEDULER_INTERVAL": "2m", "SEED_ON_FIRST_RUN": "0"}
    async with running_service(tmp_path, processes, env) as base_url, open_page() as (page, watch):
        await page.goto(f"{base_url}/swagger/")
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text("sms-dispatch")
        sent = page.locator(".opblock-summary-path[data-path='/messages/sent']")
        await expect(sent).to_be_visible()
        await sent.click()
        await expect(page.locator(".opblock-body").first).to_contain_text("limit")
        await screenshot(page, "swagger", full_page=False)
    assert watch.foreign_requests() == []
    assert watch.console_errors == []
    assert {"/swagger/doc.json", "/swagger/assets/swagger-ui-bundle.js"} <= watch.paths()
