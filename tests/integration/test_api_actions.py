"""The operator routes over the real app: retry, bulk retry, cancel, idempotent create, the attempt
history and the instance list; with their 400, 404 and 409 answers. SQLite file unless named."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from tests.integration.test_api import assert_error, create


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """Services on a fresh SQLite file with the built-in simulator, dispatcher not running."""
    settings = Settings(
        SQLITE_PATH=tmp_path / "api.db",
        SEED_ON_FIRST_RUN=0,
        MESSAGE_BATCH_SIZE=50,
        MESSAGE_RETRY_BASE="1ms",  # a retried message is due again at once
        MESSAGE_RETRY_MAX_DELAY="1ms",
    )
    async with bootstrap(settings, run_dispatcher=False) as built:
        yield built


@pytest.fixture
async def client(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process."""
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def provider_refuses(services: Services, status: int = 400) -> None:
    """Make the built-in simulator answer every send with ``status``."""
    async with httpx.AsyncClient() as http:
        knobs = {"error_rate": 1.0, "error_status": status}
        response = await http.put(f"{services.provider_url.rstrip('/')}/_sim/config", json=knobs)
        assert response.status_code == 200, response.text


async def provider_accepts(services: Services) -> None:
    """Make the built-in simulator accept every send again."""
    async with httpx.AsyncClient() as http:
        response = await http.put(f"{services.provider_url.rstrip('/')}/_sim/config", json={"error_rate": 0})
        assert response.status_code == 200, response.text


async def dead_letters(client: httpx.AsyncClient, services: Services, count: int, **body: str) -> list[str]:
    """Create ``count`` messages and have the provider refuse them with a 400: FAILED. Return ids."""
    ids = [(await create(client, **body, content=f"dead {i}"))["id"] for i in range(count)]
    await provider_refuses(services)
    await services.dispatcher.run_once()
    await provider_accepts(services)
    return ids


async def shown(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    """Return GET /messages/{id}'s data."""
    response = await client.get(f"/messages/{message_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# --- POST /messages/{id}/retry -------------------------------------------------------------


async def test_retry_replays_a_failed_message(client: httpx.AsyncClient, services: Services) -> None:
    """A FAILED message comes back PENDING with attempts 0 and its last error; then it is sent."""
    [message_id] = await dead_letters(client, services, 1)
    response = await client.post(f"/messages/{message_id}/retry")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["id"], data["status"], data["attempts"]) == (message_id, "PENDING", 0)
    assert "HTTP 400" in data["lastError"]
    assert data["nextAttemptAt"] is not None
    await services.dispatcher.run_once()
    assert (await shown(client, message_id))["status"] == "SUCCESS"


async def test_retry_replays_a_cancelled_message(client: httpx.AsyncClient) -> None:
    """A CANCELLED message can be retried back to PENDING."""
    message_id = (await create(client))["id"]
    await client.post(f"/messages/{message_id}/cancel")
    data = (await client.post(f"/messages/{message_id}/retry")).json()["data"]
    assert data["status"] == "PENDING"


@pytest.mark.parametrize("state", ["PENDING", "SUCCESS"])
async def test_retry_conflicts_with_other_statuses(
    client: httpx.AsyncClient, services: Services, state: str
) -> None:
    """Retrying a PENDING or SUCCESS message is a 409 naming the status, and changes nothing."""
    message_id = (await create(client))["id"]
    if state == "SUCCESS":
        await services.dispatcher.run_once()
    before = await shown(client, message_id)
    error = assert_error(await client.post(f"/messages/{message_id}/retry"), 409, "CONFLICT")
    assert f"is {state}" in error["message"]
    after = await shown(client, message_id)
    assert [after[k] for k in ("status", "attempts", "updatedAt")] == [
        before[k] for k in ("status", "attempts", "updatedAt")
    ]


async def test_retry_conflicts_with_a_sending_message(client: httpx.AsyncClient, services: Services) -> None:
    """Retrying a message being sent (claimed) is a 409 naming SENDING."""
    message_id = (await create(client))["id"]
    now = services.clock.now()
    await services.store.claim_due(limit=1, now=now, lease_s=60, claim_token="t", claimed_by="other")
    error = assert_error(await client.post(f"/messages/{message_id}/retry"), 409, "CONFLICT")
    assert "is SENDING" in error["message"]


async def test_retry_unknown_or_malformed_id(client: httpx.AsyncClient) -> None:
    """An unknown id is a 404 envelope; an id that is not a UUID a 400."""
    assert_error(await client.post(f"/messages/{uuid.uuid4()}/retry"), 404, "NOT_FOUND")
    assert_error(await client.post("/messages/not-a-uuid/retry"), 400, "VALIDATION_ERROR")


# --- POST /messages/{id}/cancel ------------------------------------------------------------


async def test_cancel_stops_a_pending_message_for_good(client: httpx.AsyncClient, services: Services) -> None:
    """A cancelled message answers CANCELLED and is never sent by later batches."""
    message_id = (await create(client))["id"]
    response = await client.post(f"/messages/{message_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "CANCELLED"
    report = await services.dispatcher.run_once()
    assert report.claimed == 0
    assert (await shown(client, message_id))["status"] == "CANCELLED"


@pytest.mark.parametrize("state", ["SUCCESS", "FAILED", "CANCELLED"])
async def test_cancel_conflicts_with_other_statuses(
    client: httpx.AsyncClient, services: Services, state: str
) -> None:
    """Cancelling a SUCCESS, FAILED or CANCELLED message is a 409 naming the status."""
    if state == "FAILED":
        [message_id] = await dead_letters(client, services, 1)
    else:
        message_id = (await create(client))["id"]
        if state == "SUCCESS":
            await services.dispatcher.run_once()
        else:
            await client.post(f"/messages/{message_id}/cancel")
    error = assert_error(await client.post(f"/messages/{message_id}/cancel"), 409, "CONFLICT")
    assert f"is {state}" in error["message"]


async def test_cancel_conflicts_with_a_sending_message(client: httpx.AsyncClient, services: Services) -> None:
    """Cancelling a claimed message is a 409 naming SENDING; the claim is untouched."""
    message_id = (await create(client))["id"]
    now = services.clock.now()
    await services.store.claim_due(limit=1, now=now, lease_s=60, claim_token="t", claimed_by="other")
    error = assert_error(await client.post(f"/messages/{message_id}/cancel"), 409, "CONFLICT")
    assert "is SENDING" in error["message"]
    assert (await shown(client, message_id))["status"] == "SENDING"


async def test_cancel_unknown_id(client: httpx.AsyncClient) -> None:
    """Cancelling an unknown id is a 404 envelope."""
    assert_error(await client.post(f"/messages/{uuid.uuid4()}/cancel"), 404, "NOT_FOUND")


# --- POST /messages/retry -------------------------------------------------------------------


async def test_bulk_retry_replays_every_failed_message(client: httpx.AsyncClient, services: Services) -> None:
    """{} replays every FAILED message and answers how many; a PENDING one is left alone."""
    ids = await dead_letters(client, services, 3)
    pending = (await create(client))["id"]
    response = await client.post("/messages/retry", json={})
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"retried": 3}
    assert {(await shown(client, i))["status"] for i in ids} == {"PENDING"}
    assert (await shown(client, pending))["attempts"] == 0
    assert (await client.post("/messages/retry", json={})).json()["data"] == {"retried": 0}


async def test_bulk_retry_honours_recipient_status_and_limit(
    client: httpx.AsyncClient, services: Services
) -> None:
    """to (normalised), status CANCELLED and limit each narrow what is replayed."""
    await dead_letters(client, services, 2, to="+905551111111")
    await dead_letters(client, services, 1, to="+905552222222")
    by_number = await client.post("/messages/retry", json={"to": "+90 555 222 22 22"})
    assert by_number.json()["data"] == {"retried": 1}
    assert (await client.post("/messages/retry", json={"limit": 1})).json()["data"] == {"retried": 1}
    cancelled = (await create(client))["id"]
    await client.post(f"/messages/{cancelled}/cancel")
    response = await client.post("/messages/retry", json={"status": "CANCELLED"})
    assert response.json()["data"] == {"retried": 1}
    assert (await shown(client, cancelled))["status"] == "PENDING"


async def test_bulk_retry_honours_the_time_window(client: httpx.AsyncClient, services: Services) -> None:
    """since/until bound the creation time (RFC 3339 with a zone, as on the listings)."""
    [early] = await dead_letters(client, services, 1)
    created = (await shown(client, early))["createdAt"]
    later = await client.post("/messages/retry", json={"since": "2999-01-01T03:00:00+03:00"})
    assert later.json()["data"] == {"retried": 0}
    window = {"since": created, "until": "2999-01-01T00:00:00Z"}
    assert (await client.post("/messages/retry", json=window)).json()["data"] == {"retried": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "SUCCESS"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"to": "12345"}, "to"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"until": 1767225600}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"everything": True}, "everything"),
    ],
)
async def test_bulk_retry_bad_filters(client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    """A bad filter is a 400 envelope naming the field."""
    error = assert_error(await client.post("/messages/retry", json=body), 400, "VALIDATION_ERROR")
    assert field in {d["field"] for d in error["details"]}


async def test_bulk_retry_needs_a_json_body(client: httpx.AsyncClient) -> None:
    """No body, or a body that is not JSON, is a 400 saying so."""
    assert_error(await client.post("/messages/retry"), 400, "VALIDATION_ERROR")
    response = await client.post(
        "/messages/retry", content=b"all", headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in assert_error(response, 400, "VALIDATION_ERROR")["message"]


# --- POST /messages with Idempotency-Key ---------------------------------------------------


async def post_with_key(
    client: httpx.AsyncClient, key: str, to: str = "+905551111111", content: str = "hello"
) -> httpx.Response:
    """POST /messages with an Idempotency-Key header."""
    return await client.post(
        "/messages", json={"to": to, "content": content}, headers={"Idempotency-Key": key}
    )


async def test_same_key_returns_the_same_message(client: httpx.AsyncClient, services: Services) -> None:
    """The first POST with a key is a 201; a replay is a 200 with the same message; one row."""
    first = await post_with_key(client, "order-42")
    again = await post_with_key(client, "order-42", to="+90 555 111 11 11", content=" hello ")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["data"] == first.json()["data"]
    assert sum((await services.messages.counts()).values()) == 1


async def test_different_keys_and_no_key_make_new_messages(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Two keys make two messages; without a key every POST makes one."""
    ids = {(await post_with_key(client, key)).json()["data"]["id"] for key in ("a", "b")}
    ids |= {(await create(client))["id"] for _ in range(2)}
    assert len(ids) == 4


async def test_same_key_with_another_body_is_a_conflict(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Reusing a key for a different message is a 409 saying so; no second row."""
    await post_with_key(client, "k")
    error = assert_error(await post_with_key(client, "k", content="something else"), 409, "CONFLICT")
    assert "Idempotency-Key" in error["message"] and "different message" in error["message"]
    assert sum((await services.messages.counts()).values()) == 1


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there", "ключ"])
async def test_bad_idempotency_keys(client: httpx.AsyncClient, key: str) -> None:
    """An empty, too long or non-printable-ASCII key is a 400 naming the header."""
    headers = {b"Idempotency-Key": key.encode("utf-8")}
    response = await client.post("/messages", json={"to": "+905551111111", "content": "hi"}, headers=headers)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "Idempotency-Key"


async def test_an_invalid_body_with_a_key_is_still_a_400(client: httpx.AsyncClient) -> None:
    """Validation of the body comes first: a bad number with a key is a 400, and the key stays free."""
    assert_error(await post_with_key(client, "k", to="123"), 400, "VALIDATION_ERROR")
    assert (await post_with_key(client, "k")).status_code == 201


@pytest.mark.postgres
async def test_concurrent_posts_with_one_key_make_one_row_on_postgres(pg_url: str) -> None:
    """Twenty POSTs with the same key at once on PostgreSQL: one 201, nineteen 200s, one row."""
    settings = Settings(DATABASE_URL=pg_url, SMS_PROVIDER_URL="simulator", SEED_ON_FIRST_RUN=0)
    async with bootstrap(settings, run_dispatcher=False) as built:
        transport = httpx.ASGITransport(app=create_app(built))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answers = await asyncio.gather(*(post_with_key(http, "race") for _ in range(20)))
        assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
        assert len({a.json()["data"]["id"] for a in answers}) == 1
        assert sum((await built.messages.counts()).values()) == 1


# --- GET /messages/{id} history, GET /scheduler instances ----------------------------------


async def test_history_shows_each_attempt(client: httpx.AsyncClient, services: Services) -> None:
    """A 503 then a delivery show as two attempts with their status, class and instance."""
    message_id = (await create(client))["id"]
    await provider_refuses(services, 503)
    await services.dispatcher.run_once()
    await provider_accepts(services)
    await asyncio.sleep(0.01)  # the 1 ms backoff
    await services.dispatcher.run_once()
    data = await shown(client, message_id)
    assert (data["status"], data["attempts"]) == ("SUCCESS", 2)
    failed, delivered = data["history"]
    assert (failed["attempt"], failed["outcome"], failed["httpStatus"], failed["errorClass"]) == (
        1,
        "retryable",
        503,
        "http_5xx",
    )
    assert (delivered["attempt"], delivered["outcome"], delivered["httpStatus"], delivered["errorClass"]) == (
        2,
        "delivered",
        202,
        None,
    )
    assert delivered["instance"] == services.settings.instance_name and delivered["applied"] is True
    assert set(delivered) >= {"startedAt", "durationMs", "error", "responseExcerpt"}


async def test_history_is_empty_before_any_attempt(client: httpx.AsyncClient) -> None:
    """A new message shows an empty history."""
    message_id = (await create(client))["id"]
    assert (await shown(client, message_id))["history"] == []


async def test_scheduler_lists_running_instances(client: httpx.AsyncClient, services: Services) -> None:
    """GET /scheduler lists the running dispatcher by name, and not after it shut down."""
    task = asyncio.create_task(services.dispatcher.run())
    try:
        async with asyncio.timeout(10):
            while not (await client.get("/scheduler")).json()["data"]["instances"]:
                await asyncio.sleep(0.02)
        [me] = (await client.get("/scheduler")).json()["data"]["instances"]
        assert me["name"] == services.settings.instance_name
        assert set(me) == {"name", "host", "pid", "version", "startedAt", "lastHeartbeatAt"}
    finally:
        await services.dispatcher.shutdown(task, grace_s=5)
    assert (await client.get("/scheduler")).json()["data"]["instances"] == []


async def test_spec_documents_the_operator_routes(client: httpx.AsyncClient) -> None:
    """The new routes are in the spec with their error envelopes; create documents the header."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths["/messages/{message_id}/retry"]["post"]["responses"]) >= {"200", "400", "404", "409"}
    assert set(paths["/messages/{message_id}/cancel"]["post"]["responses"]) >= {"200", "404", "409"}
    assert "400" in paths["/messages/retry"]["post"]["responses"]
    create_op = paths["/messages"]["post"]
    assert {"200", "201", "409"} <= set(create_op["responses"])
    assert "Idempotency-Key" in {p["name"] for p in create_op["parameters"]}
