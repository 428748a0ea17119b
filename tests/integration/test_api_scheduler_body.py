"""POST /scheduler's body read as the Go service reads it: any Content-Type, names in any case,
unknown fields ignored; what is still a 400; a form from a page of another origin refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import bootstrap
from sms_dispatch.config import Settings
from tests.integration.test_api import assert_error


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in process, on a fresh SQLite file, the dispatcher not running."""
    settings = Settings(SQLITE_PATH=tmp_path / "api.db", SEED_ON_FIRST_RUN=0)
    async with bootstrap(settings, run_dispatcher=False) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/octet-stream", None]
)
async def test_scheduler_reads_json_whatever_the_content_type(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    """`curl -d '{"action":"stop"}'` (urlencoded), text/plain or no Content-Type: read as JSON, as Go does."""
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post("/scheduler", content=b'{"action":"stop"}', headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"message": "scheduler stopped"}
    assert (await client.get("/scheduler")).json()["data"]["running"] is False


async def test_scheduler_field_names_in_any_case_and_unknown_fields_ignored(
    client: httpx.AsyncClient,
) -> None:
    """The name "Action" is action, unknown fields are ignored, and a name given twice: the last wins."""
    stop = await client.post("/scheduler", json={"Action": "stop", "reason": "maintenance", "by": {"who": 1}})
    assert stop.json()["data"] == {"message": "scheduler stopped"}
    start = await client.post("/scheduler", json={"ACTION": "start"})
    assert start.json()["data"] == {"message": "scheduler started"}
    both = await client.post("/scheduler", content=b'{"action": "start", "aCTION": "stop"}')
    assert both.json()["data"] == {"message": "scheduler stopped"}


async def test_scheduler_form_body_that_is_not_json_is_a_400(client: httpx.AsyncClient) -> None:
    """`curl -d action=start` is still a 400 saying the body is not JSON."""
    response = await client.post(
        "/scheduler", content=b"action=start", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "not valid JSON" in assert_error(response, 400, "VALIDATION_ERROR")["message"]


async def test_scheduler_refuses_a_form_from_a_page_of_another_origin(client: httpx.AsyncClient) -> None:
    """A page of another origin cannot stop the fleet with a form (no preflight): its body must be JSON."""
    form = {"content-type": "text/plain", "origin": "http://evil.example"}
    response = await client.post("/scheduler", content=b'{"action":"stop"}', headers=form)
    assert "Content-Type" in assert_error(response, 400, "VALIDATION_ERROR")["message"]
    assert (await client.get("/scheduler")).json()["data"]["running"] is True
    same_origin = {"content-type": "text/plain", "origin": "http://test"}
    response = await client.post("/scheduler", content=b'{"action":"stop"}', headers=same_origin)
    assert response.status_code == 200, response.text
