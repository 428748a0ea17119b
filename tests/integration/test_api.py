"""Every route of the HTTP API, over the real app on a SQLite file, including bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sms_dispatch.api.app import create_app, openapi_document
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """Services on a fresh SQLite file with the built-in simulator, dispatcher not running."""
    settings = Settings(SQLITE_PATH=tmp_path / "api.db", SEED_ON_FIRST_RUN=0, MESSAGE_BATCH_SIZE=5)
    async with bootstrap(settings, run_dispatcher=False) as built:
        yield built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """Check the error envelope (``code`` the status as an integer, ``type`` its name); return its error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == status and body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert "timestamp" in body
    error: dict[str, Any] = body["error"]
    return error


async def create(
    client: httpx.AsyncClient, to: str = "+905551111111", content: str = "hello"
) -> dict[str, Any]:
    """Create a message through the API and return its data."""
    response = await client.post("/messages", json={"to": to, "content": content})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_welcome(client: httpx.AsyncClient) -> None:
    """GET / answers the welcome message in the envelope."""
    body = (await client.get("/")).json()
    assert body["success"] is True and "Welcome" in body["data"]["message"] and body["timestamp"]


async def test_health_and_ping(client: httpx.AsyncClient) -> None:
    """/health is {"status": "ok"} and /ping is {"pong": true}."""
    assert (await client.get("/health")).json()["data"] == {"status": "ok"}
    assert (await client.get("/ping")).json()["data"] == {"pong": True}


async def test_create_message(client: httpx.AsyncClient) -> None:
    """POST /messages stores a PENDING message with the seed's field names."""
    data = await create(client, to="+90 555 111 11 11", content="  Insider - Project ")
    assert data["to"] == "+905551111111"
    assert data["content"] == "Insider - Project"
    assert data["status"] == "PENDING"
    assert {"id", "to", "content", "status", "messageId", "sentAt", "createdAt", "updatedAt"} <= set(data)


async def test_create_lists_each_invalid_field(client: httpx.AsyncClient) -> None:
    """A bad number and empty content are both named in a 400 envelope."""
    error = assert_error(
        await client.post("/messages", json={"to": "123", "content": " "}), 400, "VALIDATION_ERROR"
    )
    assert {d["field"] for d in error["details"]} == {"to", "content"}


async def test_create_rejects_over_length(client: httpx.AsyncClient) -> None:
    """Content of 256 characters is refused with the limit (255 by default) in the message."""
    error = assert_error(
        await client.post("/messages", json={"to": "+905551111111", "content": "ş" * 256}),
        400,
        "VALIDATION_ERROR",
    )
    assert "limit is 255" in error["message"]


async def test_create_rejects_missing_fields(client: httpx.AsyncClient) -> None:
    """A body without "to" is a 400 naming the field."""
    error = assert_error(await client.post("/messages", json={"content": "x"}), 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "to"


async def test_get_message_and_unknown(client: httpx.AsyncClient) -> None:
    """GET /messages/{id} shows the message; an unknown id is a 404 envelope; a non-uuid a 400."""
    data = await create(client)
    shown = (await client.get(f"/messages/{data['id']}")).json()["data"]
    assert shown["id"] == data["id"] and shown["cache"] is None
    assert_error(await client.get(f"/messages/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_error(await client.get("/messages/not-a-uuid"), 400, "VALIDATION_ERROR")


async def test_sent_listing_after_dispatch(client: httpx.AsyncClient, services: Services) -> None:
    """After a batch, /messages/sent lists SUCCESS only, newest first, and the cache entry shows."""
    ids = [(await create(client, content=f"m{i}"))["id"] for i in range(3)]
    report = await services.dispatcher.run_once()
    await services.deliverer.drain_cache_writes()
    assert report.delivered == 3
    listing = (await client.get("/messages/sent?page=1&limit=2")).json()["data"]
    assert (listing["total"], listing["page"], listing["limit"]) == (3, 1, 2)
    assert len(listing["items"]) == 2
    sent_times = [item["sentAt"] for item in listing["items"]]
    assert sent_times == sorted(sent_times, reverse=True)
    assert all(item["status"] == "SUCCESS" and item["messageId"] for item in listing["items"])
    detail = (await client.get(f"/messages/{ids[0]}")).json()["data"]
    assert detail["cache"]["present"] is True
    assert detail["cache"]["key"] == f"sent_messages:{detail['messageId']}"
    page2 = (await client.get("/messages/sent?page=2&limit=2")).json()["data"]
    assert len(page2["items"]) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=500", "limit"), ("page=abc", "page"), ("page=0", "page")],
)
async def test_sent_listing_bad_query(client: httpx.AsyncClient, query: str, field: str) -> None:
    """Out-of-range or non-numeric page/limit is a 400 naming the parameter."""
    error = assert_error(await client.get(f"/messages/sent?{query}"), 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == field
    assert field in error["message"]


async def test_scheduler_stop_start_and_status(client: httpx.AsyncClient) -> None:
    """POST /scheduler answers the seed's messages; GET /scheduler reports the switch."""
    stop = await client.post("/scheduler", json={"action": "stop"})
    assert stop.json()["data"] == {"message": "scheduler stopped"}
    status = (await client.get("/scheduler")).json()["data"]
    assert status["running"] is False and status["nextRunAt"] is None
    assert (status["interval"], status["batchSize"]) == ("2m", 5)
    start = await client.post("/scheduler", json={"action": "start"})
    assert start.json()["data"] == {"message": "scheduler started"}
    assert (await client.get("/scheduler")).json()["data"]["running"] is True


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"action": "pause"}, "action: Input should be 'start' or 'stop'"),
        ({}, "action: Field required"),
        ({"actions": "start"}, "action: Field required"),
        ({"Action": 5}, "action: Input should be 'start' or 'stop'"),
        (["start"], "expected a JSON object"),
        ("start", "expected a JSON object"),
    ],
)
async def test_scheduler_bad_action(client: httpx.AsyncClient, body: object, named: str) -> None:
    """An unknown or missing action, or a body that is not an object, is a 400 envelope naming it."""
    error = assert_error(await client.post("/scheduler", json=body), 400, "VALIDATION_ERROR")
    assert named in error["message"]


async def test_non_json_body(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 400 saying so."""
    response = await client.post(
        "/scheduler", content=b"action=start", headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "not valid JSON" in error["message"]


async def test_error_code_is_the_http_status_as_an_integer(client: httpx.AsyncClient) -> None:
    """Go clients read `error.code` as the HTTP status, an integer; the name is in `error.type`."""
    for response, status, error_type in [
        (await client.get("/messages/sent?limit=0"), 400, "VALIDATION_ERROR"),
        (await client.get(f"/messages/{uuid.uuid4()}"), 404, "NOT_FOUND"),
        (await client.delete("/scheduler"), 405, "METHOD_NOT_ALLOWED"),
    ]:
        error = response.json()["error"]
        assert response.status_code == status
        assert type(error["code"]) is int and error["code"] == status and error["type"] == error_type


async def test_unknown_route_and_wrong_method(client: httpx.AsyncClient) -> None:
    """An unknown route is a 404 envelope; a wrong method a 405 envelope."""
    assert_error(await client.get("/nope"), 404, "NOT_FOUND")
    assert_error(await client.delete("/scheduler"), 405, "METHOD_NOT_ALLOWED")


GET_PATHS = [
    *(
        path
        for path, operations in openapi_document()["paths"].items()
        if "get" in operations and "{" not in path
    ),
    "/messages/00000000-0000-4000-8000-000000000000",
    "/dashboard",
    "/dashboard/app.js",
    "/swagger/",
    "/swagger/doc.json",
    "/swagger/assets/swagger-ui.css",
]
STATIC_PATHS = {"/dashboard", "/dashboard/app.js", "/swagger/assets/swagger-ui.css"}


@pytest.mark.parametrize("path", GET_PATHS)
async def test_head_answers_every_get_route_with_its_headers_and_no_body(
    client: httpx.AsyncClient, path: str
) -> None:
    """HEAD on a GET route answers what GET answers (status, content type, length), without a body."""
    got = await client.get(path)
    head = await client.head(path)
    assert head.status_code == got.status_code != 405, head.text
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert int(head.headers["content-length"]) > 0
    if path in STATIC_PATHS:
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))


async def test_head_keeps_the_allow_answers_right(client: httpx.AsyncClient) -> None:
    """A wrong method on a GET route still names GET and HEAD; HEAD on a POST-only route is a 405."""
    assert set((await client.delete("/health")).headers["allow"].split(", ")) == {"GET", "HEAD"}
    head = await client.head(f"/messages/{uuid.uuid4()}/cancel")
    assert head.status_code == 405 and head.headers["allow"] == "POST" and head.content == b""


async def test_swagger_is_served_locally(client: httpx.AsyncClient) -> None:
    """/swagger/ loads its assets from this service, and the spec is at /swagger/doc.json."""
    page = await client.get("/swagger/")
    assert page.status_code == 200
    assert "/swagger/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    asset = await client.get("/swagger/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
    spec = (await client.get("/swagger/doc.json")).json()
    assert spec == (await client.get("/openapi.json")).json()
    assert {
        "/",
        "/health",
        "/ping",
        "/messages/sent",
        "/scheduler",
        "/messages",
        "/messages/{message_id}",
    } <= set(spec["paths"])


async def test_spec_documents_error_envelopes(client: httpx.AsyncClient) -> None:
    """The spec names the error envelope on the routes that can fail."""
    spec = (await client.get("/openapi.json")).json()
    sent = spec["paths"]["/messages/sent"]["get"]["responses"]
    assert sent["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    assert "404" in spec["paths"]["/messages/{message_id}"]["get"]["responses"]
