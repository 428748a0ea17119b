"""Operating the HTTP API: readiness, metrics, API keys and request ids, over the real app."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from sms_dispatch.errors import ConfigError
from tests.conftest import PG_ADMIN_URL
from tests.e2e.conftest import free_port

OPERATE = "operate-key-0123456789abcdef"
READ = "read-key-0123456789abcdef"
KEYS = f"{OPERATE}:operate,{READ}:read"


def settings_on(tmp_path: Path, **extra: Any) -> Settings:
    """Settings on a fresh SQLite file with the built-in simulator, nothing seeded."""
    return Settings(SQLITE_PATH=tmp_path / "ops.db", SEED_ON_FIRST_RUN=0, MESSAGE_BATCH_SIZE=10, **extra)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """Run the services (dispatcher off) and yield a client talking to the app in process."""
    async with bootstrap(settings, run_dispatcher=False) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, services


@pytest.fixture
async def open_api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """The API without keys."""
    async with serving(settings_on(tmp_path)) as pair:
        yield pair


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API with one operate key and one read key."""
    async with serving(settings_on(tmp_path, API_KEYS=KEYS)) as (http, _):
        yield http


def error_of(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    """Check the error envelope and return its error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["message"]
    assert (body["error"]["code"], body["error"]["type"]) == (status, error_type)
    error: dict[str, Any] = body["error"]
    return error


def bearer(key: str) -> dict[str, str]:
    """Return the Authorization header carrying ``key``."""
    return {"Authorization": f"Bearer {key}"}


# --- readiness ---------------------------------------------------------------------------


async def test_ready_without_redis_says_not_configured(open_api: tuple[httpx.AsyncClient, Services]) -> None:
    """With the in-process cache, /ready is 200: database ok, redis not configured."""
    http, _ = open_api
    response = await http.get("/ready")
    assert response.status_code == 200
    assert response.json()["data"] == {"database": "ok", "redis": "not configured", "cacheBacklog": 0}


@pytest.mark.redis
async def test_ready_with_redis_checks_it(tmp_path: Path, redis_url: str) -> None:
    """With Redis configured and up, /ready reports both ok."""
    async with serving(settings_on(tmp_path, REDIS_URL=redis_url)) as (http, _):
        assert (await http.get("/ready")).json()["data"] == {
            "database": "ok",
            "redis": "ok",
            "cacheBacklog": 0,
        }


async def test_ready_reports_redis_degraded_when_it_does_not_answer(tmp_path: Path) -> None:
    """With Redis configured but unreachable, /ready stays 200 and says "degraded": sending goes on."""
    settings = settings_on(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with serving(settings) as (http, _):
        response = await http.get("/ready")
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"database": "ok", "redis": "degraded", "cacheBacklog": 0}


@pytest.mark.postgres
async def test_ready_names_the_database_when_it_is_gone(tmp_path: Path, pg_url: str) -> None:
    """When the PostgreSQL database disappears, /ready is a 503 naming the database."""
    async with serving(settings_on(tmp_path, DATABASE_URL=pg_url, SMS_PROVIDER_URL="simulator")) as (http, _):
        assert (await http.get("/ready")).status_code == 200
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()
        error = error_of(await http.get("/ready"), 503, "DEPENDENCY_UNAVAILABLE")
        assert "database" in error["message"]
        assert (await http.get("/health")).status_code == 200


# --- metrics -----------------------------------------------------------------------------

METRIC_NAMES = (
    "sms_dispatch_messages",
    "sms_dispatch_queue_lag_seconds",
    "sms_dispatch_sends_total",
    "sms_dispatch_send_duration_seconds",
    "sms_dispatch_batch_size_messages",
    "sms_dispatch_batch_duration_seconds",
    "sms_dispatch_retries_total",
    "sms_dispatch_rescues_total",
    "sms_dispatch_cache_write_failures_total",
    "sms_dispatch_scheduler_running",
    "sms_dispatch_instances",
    "sms_dispatch_database_up",
    "process_resident_memory_bytes",
)


def sample(text: str, name: str, labels: str = "") -> float:
    """Return the value of one sample in a Prometheus text page."""
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in the page"
    return float(match.group(1))


async def test_metrics_page_lists_every_metric(open_api: tuple[httpx.AsyncClient, Services]) -> None:
    """/metrics answers the Prometheus text format with every metric the README lists."""
    http, _ = open_api
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in response.text, name


async def test_metrics_follow_the_queue(open_api: tuple[httpx.AsyncClient, Services]) -> None:
    """Three created messages show as PENDING; after a batch, as SUCCESS and three 2xx sends."""
    http, services = open_api
    for n in range(3):
        await http.post("/messages", json={"to": "+905551111111", "content": f"m{n}"})
    before = (await http.get("/metrics")).text
    assert sample(before, "sms_dispatch_messages", '{status="PENDING"}') == 3
    await services.dispatcher.run_once()
    after = (await http.get("/metrics")).text
    assert sample(after, "sms_dispatch_messages", '{status="SUCCESS"}') == 3
    assert sample(after, "sms_dispatch_sends_total", '{outcome="delivered",status_class="2xx"}') == 3
    assert sample(after, "sms_dispatch_batch_size_messages_sum") == 3
    assert sample(after, "sms_dispatch_queue_lag_seconds") == 0


# --- API keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/health", "/ping", "/ready", "/metrics", "/openapi.json", "/swagger/", "/swagger/doc.json"]
)
async def test_open_routes_need_no_key(keyed: httpx.AsyncClient, path: str) -> None:
    """Liveness, readiness, metrics and the documentation stay open when keys are set."""
    assert (await keyed.get(path)).status_code == 200


async def test_no_key_is_a_401_with_a_challenge(keyed: httpx.AsyncClient) -> None:
    """A protected route without a key is a 401 envelope with WWW-Authenticate."""
    response = await keyed.get("/scheduler")
    error_of(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_an_unknown_key_is_a_401(keyed: httpx.AsyncClient) -> None:
    """A key that is not configured is refused with 401, in either header."""
    error_of(await keyed.get("/scheduler", headers=bearer("not-a-key")), 401, "UNAUTHORIZED")
    error_of(await keyed.get("/messages/sent", headers={"X-API-Key": READ + "x"}), 401, "UNAUTHORIZED")


async def test_a_read_key_reads(keyed: httpx.AsyncClient) -> None:
    """A read key may list, look up and see the scheduler, by Bearer or X-API-Key."""
    assert (await keyed.get("/scheduler", headers=bearer(READ))).status_code == 200
    assert (await keyed.get("/messages/sent", headers={"X-API-Key": READ})).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/scheduler", {"action": "stop"}),
        ("POST", "/messages", {"to": "+905551111111", "content": "hi"}),
        ("POST", "/messages/retry", {}),
        ("POST", "/messages/00000000-0000-4000-8000-000000000000/cancel", None),
        ("POST", "/messages/00000000-0000-4000-8000-000000000000/retry", None),
    ],
)
async def test_a_read_key_cannot_operate(
    keyed: httpx.AsyncClient, method: str, path: str, body: dict[str, str] | None
) -> None:
    """A read key on a control or write route is a 403 envelope."""
    response = await keyed.request(method, path, json=body, headers=bearer(READ))
    error = error_of(response, 403, "FORBIDDEN")
    assert "operate" in error["message"]


async def test_an_operate_key_operates_and_reads(keyed: httpx.AsyncClient) -> None:
    """An operate key may stop the scheduler, create a message and read them back."""
    headers = {"X-API-Key": OPERATE}
    assert (await keyed.post("/scheduler", json={"action": "stop"}, headers=headers)).status_code == 200
    created = await keyed.post(
        "/messages", json={"to": "+905551111111", "content": "hi"}, headers=bearer(OPERATE)
    )
    assert created.status_code == 201
    shown = await keyed.get(f"/messages/{created.json()['data']['id']}", headers=headers)
    assert shown.status_code == 200


async def test_the_key_is_checked_before_the_body(keyed: httpx.AsyncClient) -> None:
    """A bad body without a key is a 401, not a 400: strangers learn nothing about the input rules."""
    error_of(await keyed.post("/scheduler", json={"action": "pause"}), 401, "UNAUTHORIZED")


async def test_spec_documents_the_keys(keyed: httpx.AsyncClient) -> None:
    """The OpenAPI document has both key schemes and the 401/403 answers where they apply."""
    spec = (await keyed.get("/openapi.json")).json()
    assert set(spec["components"]["securitySchemes"]) == {"bearerKey", "apiKeyHeader"}
    control = spec["paths"]["/scheduler"]["post"]
    assert {"401", "403"} <= set(control["responses"]) and control["security"]
    reading = spec["paths"]["/scheduler"]["get"]
    assert "401" in reading["responses"] and "403" not in reading["responses"]
    for open_path in ("/health", "/ready", "/metrics"):
        operation = spec["paths"][open_path]["get"]
        assert "security" not in operation and "401" not in operation["responses"]


async def test_production_without_keys_refuses_to_serve(tmp_path: Path) -> None:
    """With APP_ENV=production and no API_KEYS, building the app is a ConfigError."""
    settings = settings_on(tmp_path, APP_ENV="production", SMS_PROVIDER_URL="http://127.0.0.1:9/")
    async with bootstrap(settings, run_dispatcher=False) as services:
        with pytest.raises(ConfigError, match="API_KEYS"):
            create_app(services)


# --- request ids -------------------------------------------------------------------------


async def test_a_request_id_is_made_when_none_is_sent(open_api: tuple[httpx.AsyncClient, Services]) -> None:
    """Without X-Request-ID the answer carries a new one, different for each request."""
    http, _ = open_api
    first, second = (await http.get("/health")).headers, (await http.get("/health")).headers
    assert re.fullmatch(r"[0-9a-f]{32}", first["x-request-id"])
    assert first["x-request-id"] != second["x-request-id"]


async def test_a_sane_request_id_is_kept(open_api: tuple[httpx.AsyncClient, Services]) -> None:
    """A caller's sane X-Request-ID comes back unchanged, on errors too."""
    http, _ = open_api
    assert (await http.get("/health", headers={"X-Request-ID": "trace-42:a.b_c"})).headers[
        "x-request-id"
    ] == "trace-42:a.b_c"
    assert (await http.get("/nope", headers={"X-Request-ID": "trace-43"})).headers[
        "x-request-id"
    ] == "trace-43"


@pytest.mark.parametrize("insane", ["has space", "x" * 129, "semi;colon", "<script>"])
async def test_an_insane_request_id_is_replaced(
    open_api: tuple[httpx.AsyncClient, Services], insane: str
) -> None:
    """An X-Request-ID that is too long or has odd characters is replaced by a new one."""
    http, _ = open_api
    returned = (await http.get("/health", headers={"X-Request-ID": insane})).headers["x-request-id"]
    assert returned != insane and re.fullmatch(r"[0-9a-f]{32}", returned)


async def test_refused_requests_carry_a_request_id(keyed: httpx.AsyncClient) -> None:
    """A 401 answer carries the request id too."""
    response = await keyed.get("/scheduler", headers={"X-Request-ID": "denied-1"})
    assert (response.status_code, response.headers["x-request-id"]) == (401, "denied-1")


async def test_an_unexpected_error_still_carries_the_request_id(tmp_path: Path) -> None:
    """A route that crashes answers the 500 envelope with the caller's X-Request-ID."""
    async with bootstrap(settings_on(tmp_path), run_dispatcher=False) as services:
        app = create_app(services)

        async def boom() -> None:
            raise RuntimeError("a bug")

        app.add_api_route("/boom", boom)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/boom", headers={"X-Request-ID": "crash-1"})
    error_of(response, 500, "INTERNAL_ERROR")
    assert response.headers["x-request-id"] == "crash-1"


async def test_a_wrong_method_lists_every_method_of_the_path(
    open_api: tuple[httpx.AsyncClient, Services],
) -> None:
    """A 405 answer's Allow names all the path's methods, not one route's."""
    http, _ = open_api
    response = await http.delete("/scheduler")
    error_of(response, 405, "METHOD_NOT_ALLOWED")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert (await http.get("/messages/retry")).status_code == 400  # the id "retry" is not a UUID
    assert set((await http.put("/messages/retry")).headers["allow"].split(", ")) == {"POST"}
