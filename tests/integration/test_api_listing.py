"""The listings over HTTP: cursor walks, filters, totals, and a 400 envelope for every bad input.

The walks run on the real app over SQLite and over PostgreSQL; the bad-input cases on SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest

from sms_dispatch.api.app import create_app
from sms_dispatch.api.cursors import Listing, encode_cursor
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from sms_dispatch.domain import NewMessage, Status, Transition
from sms_dispatch.ports import Position
from tests.integration.test_api import assert_error

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def settings_for(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on a fresh SQLite file or PostgreSQL database, no seeding."""
    if backend == "sqlite":
        return Settings(SQLITE_PATH=tmp_path / "api.db", SEED_ON_FIRST_RUN=0)
    return Settings(
        DATABASE_URL=request.getfixturevalue("pg_url"), SMS_PROVIDER_URL="simulator", SEED_ON_FIRST_RUN=0
    )


async def open_client(services: Services) -> httpx.AsyncClient:
    """Return an HTTP client talking to the app over ``services`` in process."""
    transport = httpx.ASGITransport(app=create_app(services))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def services(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    """Services on a fresh SQLite file, dispatcher not running."""
    async with bootstrap(settings_for("sqlite", request, tmp_path), run_dispatcher=False) as built:
        yield built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the SQLite app."""
    async with await open_client(services) as http:
        yield http


@pytest.fixture(params=BACKENDS)
def any_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on each database: a SQLite file, a fresh PostgreSQL database."""
    return settings_for(request.param, request, tmp_path)


@pytest.fixture
async def any_services(any_settings: Settings) -> AsyncIterator[Services]:
    """Services on each database, dispatcher not running."""
    async with bootstrap(any_settings, run_dispatcher=False) as built:
        yield built


@pytest.fixture
async def any_client(any_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the app over each database."""
    async with await open_client(any_services) as http:
        yield http


async def make(services: Services, count: int, outcome: Status | None = None) -> list[UUID]:
    """Store ``count`` messages to distinct numbers; claim and finish them with ``outcome`` if given."""
    now = datetime.now(UTC)
    created = [
        await services.store.create(
            NewMessage(f"+9055512{n:05d}", f"m{n}"), now=now + timedelta(milliseconds=n)
        )
        for n in range(count)
    ]
    if outcome is not None:
        claimed = await services.store.claim_due(
            limit=count, now=now + timedelta(seconds=1), lease_s=30, claim_token="t", claimed_by="test"
        )
        finished = [
            Transition(m.id, "t", outcome, f"p-{m.id}", sent_at=now + timedelta(seconds=1, milliseconds=n))
            for n, m in enumerate(claimed)
        ]
        await services.store.finish(finished, now=now + timedelta(seconds=2))
    return [m.id for m in created]


async def walk(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    """Follow nextCursor from ``path`` to the end; return every page's data."""
    pages = [(await client.get(path)).json()["data"]]
    separator = "&" if "?" in path else "?"
    while pages[-1]["nextCursor"] is not None:
        response = await client.get(f"{path}{separator}cursor={pages[-1]['nextCursor']}")
        assert response.status_code == 200, response.text
        pages.append(response.json()["data"])
    return pages


async def test_sent_cursor_walk_lists_every_message_once(
    any_client: httpx.AsyncClient, any_services: Services
) -> None:
    """Following nextCursor through /messages/sent lists every sent message once, newest first."""
    sent = await make(any_services, 7, Status.SUCCESS)
    pages = await walk(any_client, "/messages/sent?limit=3")
    items = [item for page in pages for item in page["items"]]
    assert sorted(item["id"] for item in items) == sorted(str(i) for i in sent)
    assert len(items) == 7
    assert [item["sentAt"] for item in items] == sorted((item["sentAt"] for item in items), reverse=True)
    assert [(p["total"], p["page"], len(p["items"])) for p in pages] == [
        (7, 1, 3),
        (7, None, 3),
        (7, None, 1),
    ]


async def test_messages_cursor_walk_lists_every_message_once(
    any_client: httpx.AsyncClient, any_services: Services
) -> None:
    """Following nextCursor through /messages lists every message once, in any status, newest first."""
    made = [*await make(any_services, 3, Status.FAILED), *await make(any_services, 4)]
    pages = await walk(any_client, "/messages?limit=2")
    items = [item for page in pages for item in page["items"]]
    assert sorted(item["id"] for item in items) == sorted(str(i) for i in made)
    assert len(items) == 7
    assert [item["createdAt"] for item in items] == sorted((i["createdAt"] for i in items), reverse=True)
    assert {p["total"] for p in pages} == {7}


async def test_dead_letters_are_listed_by_status(client: httpx.AsyncClient, services: Services) -> None:
    """status=FAILED lists only the dead letters, with their total."""
    failed = await make(services, 2, Status.FAILED)
    await make(services, 3)
    data = (await client.get("/messages?status=FAILED")).json()["data"]
    assert sorted(item["id"] for item in data["items"]) == sorted(str(i) for i in failed)
    assert (data["total"], data["nextCursor"], {i["status"] for i in data["items"]}) == (2, None, {"FAILED"})


async def test_sent_page_keeps_the_go_shape(client: httpx.AsyncClient, services: Services) -> None:
    """page/limit answers items, total, page and limit as the Go service did, plus nextCursor."""
    await make(services, 3, Status.SUCCESS)
    data = (await client.get("/messages/sent?page=2&limit=2")).json()["data"]
    assert set(data) == {"items", "total", "page", "limit", "nextCursor"}
    assert (len(data["items"]), data["total"], data["page"], data["limit"], data["nextCursor"]) == (
        1,
        3,
        2,
        2,
        None,
    )


async def test_filtered_sent_listing_has_no_total(client: httpx.AsyncClient, services: Services) -> None:
    """A `to` filter lists that recipient's sent messages and answers total null."""
    await make(services, 3, Status.SUCCESS)
    data = (await client.get("/messages/sent?to=%2B905551200001")).json()["data"]
    assert ([i["to"] for i in data["items"]], data["total"]) == (["+905551200001"], None)


async def test_recipient_filter_takes_an_unencoded_plus(
    client: httpx.AsyncClient, services: Services
) -> None:
    """`to=+90…` written without encoding (the + arrives as a space) still filters by that number."""
    await make(services, 2)
    data = (await client.get("/messages?to=+905551200001")).json()["data"]
    assert [i["to"] for i in data["items"]] == ["+905551200001"]


async def test_time_window_takes_offsets_and_nanoseconds(
    client: httpx.AsyncClient, services: Services
) -> None:
    """since/until take RFC 3339 with any offset and Go's nanosecond fractions."""
    [made] = await make(services, 1)
    since = quote("2000-01-01T03:00:00.123456789+03:00")
    data = (await client.get(f"/messages?since={since}&until=2999-01-01T00:00:00Z")).json()["data"]
    assert [i["id"] for i in data["items"]] == [str(made)]


WRONG_CURSOR = encode_cursor(Listing.SENT, Position(datetime(2026, 1, 1, tzinfo=UTC), UUID(int=1)))


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/messages/sent?cursor=not-a-cursor", "cursor"),
        ("/messages?cursor=bm90fGF8Y3Vyc29y", "cursor"),
        (f"/messages?cursor={WRONG_CURSOR}", "cursor"),
        ("/messages?status=PAUSED", "status"),
        ("/messages?status=failed", "status"),
        ("/messages?since=yesterday", "since"),
        ("/messages?since=2026-01-01", "since"),
        ("/messages/sent?until=2026-01-01T00:00:00", "until"),
        ("/messages/sent?since=2026-13-01T00:00:00Z", "since"),
        ("/messages?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("/messages?to=abc", "to"),
        ("/messages?limit=0", "limit"),
        ("/messages?limit=101", "limit"),
        ("/messages/sent?page=50002&limit=20", "page"),
    ],
)
async def test_bad_listing_input_is_a_400_naming_the_field(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    """A bad cursor, status, time, window, recipient, limit or too deep a page is a 400 naming it."""
    error = assert_error(await client.get(path), 400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in error["details"]] == [field]


async def test_bad_status_names_the_allowed_ones(client: httpx.AsyncClient) -> None:
    """An unknown status is answered with the list of statuses there are."""
    error = assert_error(await client.get("/messages?status=PAUSED"), 400, "VALIDATION_ERROR")
    assert all(status.value in error["message"] for status in Status)


async def test_deepest_page_by_offset_is_still_served(client: httpx.AsyncClient) -> None:
    """A page starting exactly 1,000,000 rows deep is served (empty here), one row deeper is not."""
    assert (await client.get("/messages/sent?page=10001&limit=100")).status_code == 200
    assert (await client.get("/messages/sent?page=1000000&limit=1")).status_code == 200
    assert (await client.get("/messages/sent?page=500002&limit=2")).status_code == 400


async def test_spec_documents_the_listings(client: httpx.AsyncClient) -> None:
    """The OpenAPI spec has GET /messages with its filters and the 400 envelope, and sent's cursor."""
    spec = (await client.get("/openapi.json")).json()
    listing = spec["paths"]["/messages"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"status", "to", "since", "until", "cursor", "limit"}
    assert listing["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorEnvelope"
    )
    sent = {p["name"] for p in spec["paths"]["/messages/sent"]["get"]["parameters"]}
    assert sent == {"page", "limit", "cursor", "to", "since", "until"}
