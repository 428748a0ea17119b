"""The HTTP API while a dependency is away, over the real app: the database cut off by a proxy of the
test's own (a 503 envelope, one log line when it goes and one when it is back), Redis stopped (a
private redis-server killed: still ready, "degraded", with the cache backlog), and a bug (a 500
and one traceback)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sms_dispatch.api.app import create_app
from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from tests.conftest import PG_ADMIN_URL
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy

Lines = Callable[[], list[dict[str, Any]]]


def settings_on(tmp_path: Path, **extra: Any) -> Settings:
    """Settings with the built-in simulator, nothing seeded, on SQLite unless told otherwise."""
    return Settings(
        SQLITE_PATH=tmp_path / "outage.db", SEED_ON_FIRST_RUN=0, SMS_PROVIDER_URL="simulator", **extra
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """Run the services (dispatcher off) and yield a client talking to the app in process."""
    async with bootstrap(settings, run_dispatcher=False) as services:
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http, services


def outage_events(lines: Lines) -> list[tuple[str, str]]:
    """Return the (level, event) of the API's outage lines."""
    return [
        (line["level"], line["event"]) for line in lines() if line["logger"] == "sms_dispatch.api.outages"
    ]


def assert_unavailable(response: httpx.Response) -> dict[str, Any]:
    """Check the 503 envelope and return its error object."""
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["success"] is False
    assert (body["error"]["code"], body["error"]["type"]) == (503, "DEPENDENCY_UNAVAILABLE")
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture
def postgres_proxy() -> AsyncIterator[TcpProxy]:
    """A proxy in front of the machine's PostgreSQL, for this test alone."""
    host, port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        yield proxy


def through(proxy: TcpProxy, pg_url: str) -> str:
    """Return ``pg_url`` with its host and port replaced by the proxy's."""
    host_port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    return pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")


@pytest.mark.postgres
async def test_a_database_outage_is_a_503_and_two_log_lines(
    tmp_path: Path, pg_url: str, postgres_proxy: TcpProxy, json_log: Lines
) -> None:
    """With the database cut off, every database-backed route answers the 503 envelope and liveness
    stays 200; the first request after it is back answers 200. The outage logs one WARNING when it
    went and one INFO when it came back, with no traceback on any line."""
    async with serving(settings_on(tmp_path, DATABASE_URL=through(postgres_proxy, pg_url))) as (http, _):
        assert (await http.get("/messages/sent")).status_code == 200
        postgres_proxy.cut()
        error = assert_unavailable(await http.get("/messages/sent"))
        assert error["message"] == "the database does not answer"
        assert_unavailable(await http.get("/stats"))
        assert_unavailable(await http.post("/scheduler", json={"action": "stop"}))
        assert_unavailable(await http.post("/messages", json={"to": "+905551111111", "content": "hi"}))
        assert "database" in assert_unavailable(await http.get("/ready"))["message"]
        assert (await http.get("/health")).status_code == 200  # not a sign the database is back
        postgres_proxy.restore()
        assert (await http.get("/messages/sent")).status_code == 200
        assert (await http.get("/stats")).status_code == 200
    lines = json_log()
    assert outage_events(json_log) == [
        ("warning", "database unavailable"),
        ("info", "database available again"),
    ]
    gone = next(line for line in lines if line["event"] == "database unavailable")
    assert gone["path"] == "/messages/sent" and "does not answer" in gone["error"]
    back = next(line for line in lines if line["event"] == "database available again")
    assert back["failures"] == 5
    assert not [line for line in lines if "exception" in line]
    access = [(line["status"], line["level"]) for line in lines if line["event"] == "request"]
    assert access.count((503, "warning")) == 5 and not [a for a in access if a[1] == "error"]


async def test_redis_stopped_keeps_the_service_ready_and_reports_the_backlog(
    tmp_path: Path, private_redis: RedisServer, json_log: Lines
) -> None:
    """With its redis-server killed, /ready stays 200 with "redis": "degraded" and the entries
    waiting in the cache backlog; once Redis is back it is "ok" again. One line each way."""
    async with serving(settings_on(tmp_path, REDIS_URL=private_redis.url)) as (http, services):
        first = await http.get("/ready")
        assert first.json()["data"] == {"database": "ok", "redis": "ok", "cacheBacklog": 0}
        private_redis.kill()
        writer = services.deliverer.cache_writer
        writer.submit({f"provider-{n}": datetime(2026, 1, 1, tzinfo=UTC) for n in range(3)})
        await writer.drain()  # the write failed: its entries wait in the backlog
        for _ in range(2):
            response = await http.get("/ready")
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {"database": "ok", "redis": "degraded", "cacheBacklog": 3}
        private_redis.start()
        assert (await http.get("/ready")).json()["data"]["redis"] == "ok"
    assert outage_events(json_log) == [("warning", "redis unavailable"), ("info", "redis available again")]


async def test_a_bug_answers_500_and_logs_one_traceback(tmp_path: Path, json_log: Lines) -> None:
    """An unexpected error answers the 500 envelope and is logged once with its traceback; it is not
    raised again to the server (which logged a second traceback without the request id)."""
    async with bootstrap(settings_on(tmp_path), run_dispatcher=False) as services:
        app = create_app(services)

        async def boom() -> None:
            raise RuntimeError("a bug")

        app.add_api_route("/boom", boom)
        transport = httpx.ASGITransport(app=app)  # raises what the app raises to the server
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/boom", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500 and response.json()["error"]["type"] == "INTERNAL_ERROR"
    tracebacks = [line for line in json_log() if "exception" in line]
    assert len(tracebacks) == 1 and "RuntimeError: a bug" in tracebacks[0]["exception"]
    assert tracebacks[0]["request_id"] == "bug-1" and tracebacks[0]["level"] == "error"
