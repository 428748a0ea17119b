"""The API on the Go service's rules: every message the Go service would send is accepted, content
over the Go column's varchar(255) is a 400 naming that limit (never a 500), and the dead letters
of the old, stricter rule are replayed by their error class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from sms_dispatch.domain import AttemptOutcome, AttemptRecord, Status, Transition
from tests.go_service import run_go_automigrate

JsonLog = Callable[[], list[dict[str, Any]]]

PLAIN_INSERT = text("""INSERT INTO messages ("to", content) VALUES (:to, :content)""")
GO_LIMIT = "the database's messages.content column holds at most 255 (varchar(255))"


@asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The real app over services on ``database_url``, dispatcher not running."""
    # A provider URL never called (the dispatcher does not run): a configured database needs one.
    never_called = "http://127.0.0.1:9/never-called"
    configured = Settings(
        DATABASE_URL=database_url, SMS_PROVIDER_URL=never_called, SEED_ON_FIRST_RUN=0, **settings
    )
    async with bootstrap(configured, run_dispatcher=False) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield services, client


def content_error(response: httpx.Response) -> str:
    """Return the message of the 400's ``content`` field."""
    assert response.status_code == 400, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "content"
    return str(detail["message"])


async def test_a_go_seed_message_is_accepted(tmp_path: Path) -> None:
    """A +905 number of the Go seed that is no valid number, with 255 characters, is queued."""
    async with served(f"sqlite:///{tmp_path / 'rules.db'}") as (_, client):
        response = await client.post("/messages", json={"to": "+905001234567", "content": "é" * 255})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["to"] == "+905001234567"


@pytest.mark.postgres
async def test_content_over_the_go_column_is_a_400_naming_it(pg_url: str, json_log: JsonLog) -> None:
    """On a table whose content the Go AutoMigrate made varchar(255), longer content is a 400
    naming that limit, whether the column was so at start or became so while serving."""
    async with served(pg_url, MESSAGE_MAX_LENGTH=1000) as (services, client):
        await run_go_automigrate(services.engine)
        body = {"to": "+905551111111", "content": "a" * 300}
        assert (
            content_error(await client.post("/messages", json=body)) == f"is 300 characters long; {GO_LIMIT}"
        )
        keyed = await client.post("/messages", json=body, headers={"Idempotency-Key": "k-1"})
        assert content_error(keyed) == f"is 300 characters long; {GO_LIMIT}"
    already = len(json_log())
    async with served(pg_url, MESSAGE_MAX_LENGTH=1000) as (_, client):  # the limit is read at start
        over = await client.post("/messages", json={"to": "+905551111111", "content": "b" * 256})
        fits = await client.post("/messages", json={"to": "+905551111111", "content": "b" * 255})
    logs = json_log()[already:]
    assert content_error(over) == f"is 256 characters long; {GO_LIMIT}"
    assert fits.status_code == 201, fits.text
    [warning] = [line for line in logs if line["event"].startswith("messages.content holds fewer")]
    assert (warning["column_limit"], warning["message_max_length"]) == (255, 1000)


async def _dead_letter(services: Services, to: str, content: str, error_class: str) -> Any:
    """Insert a row by hand and fail it as a send would have, with an attempt of ``error_class``."""
    async with services.engine.begin() as connection:
        await connection.execute(PLAIN_INSERT, {"to": to, "content": content})
    [message] = await services.store.claim_due(
        limit=1, now=datetime.now(UTC), lease_s=30, claim_token="t", claimed_by="test"
    )
    attempt = AttemptRecord(
        message.id, 1, datetime.now(UTC), 1.0, AttemptOutcome.INVALID, error_class=error_class
    )
    failed = Transition(message.id, "t", Status.FAILED, last_error=f"{error_class}: refused")
    await services.store.finish([failed], now=datetime.now(UTC), attempts=[attempt])
    return message.id


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'retry.db'}"
    return str(request.getfixturevalue("pg_url"))


async def test_bulk_retry_replays_by_error_class(database_url: str) -> None:
    """POST /messages/retry {"errorClass": "invalid"} replays only the messages the rules refused."""
    async with served(database_url) as (services, client):
        invalid = await _dead_letter(services, "+905001234567", "refused by the old rule", "invalid")
        refused = await _dead_letter(services, "+905551111111", "refused by the provider", "http_4xx")
        response = await client.post("/messages/retry", json={"errorClass": "invalid"})
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"retried": 1}
        assert (await services.store.get(invalid)).status is Status.PENDING  # type: ignore[union-attr]
        assert (await services.store.get(refused)).status is Status.FAILED  # type: ignore[union-attr]
        bad = await client.post("/messages/retry", json={"errorClass": ""})
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["details"][0]["field"] == "errorClass"
