"""The real ``sms-dispatch serve`` process as the Go service's clients use it, over the wire: ``HEAD``
as the probes send it, ``curl -d`` bodies, and the error envelope Go code decodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServiceProcess, clean_env, free_port, wait_until_healthy


@pytest.fixture
async def service_url(tmp_path: Path, processes: list[ServiceProcess]) -> str:
    """Run ``sms-dispatch serve`` on the embedded defaults (SQLite, simulator); yield its base URL."""
    port = free_port()
    env = clean_env({"SQLITE_PATH": str(tmp_path / "go.db"), "SEED_ON_FIRST_RUN": "0", "API_PORT": str(port)})
    service = ServiceProcess(["serve"], env, tmp_path)
    processes.append(service)
    base = f"http://127.0.0.1:{port}"
    await wait_until_healthy(base, service)
    return base  # the processes fixture stops it


async def exchange(base: str, raw: bytes) -> bytes:
    """Send raw HTTP/1.1 bytes on one connection and return everything the server answers."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


async def test_head_health_over_the_wire_has_headers_and_no_body(service_url: str) -> None:
    """HEAD /health is a 200 with GET's Content-Length and no body: the next answer on the same
    connection starts right after its headers."""
    answer = await exchange(
        service_url,
        b"HEAD /health HTTP/1.1\r\nHost: go\r\n\r\nGET /health HTTP/1.1\r\nHost: go\r\nConnection: close\r\n\r\n",
    )
    head, rest = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    got_headers, got_body = rest.split(b"\r\n\r\n", 1)
    assert got_headers.startswith(b"HTTP/1.1 200 "), "the HEAD answer carried a body"
    assert int(length.split(b":")[1]) == len(got_body)
    async with httpx.AsyncClient(base_url=service_url) as http:
        assert (await http.head("/messages/sent")).status_code == 200


async def test_curl_d_as_the_go_readme_types_it_stops_and_starts(service_url: str) -> None:
    """`curl -d '{"action":"stop"}' …/scheduler` sends application/x-www-form-urlencoded: it works."""
    curl = {"content-type": "application/x-www-form-urlencoded", "user-agent": "curl/8.5.0", "accept": "*/*"}
    async with httpx.AsyncClient(base_url=service_url) as http:
        stop = await http.post("/scheduler", content=b'{"action":"stop"}', headers=curl)
        assert (stop.status_code, stop.json()["data"]) == (200, {"message": "scheduler stopped"})
        start = await http.post("/scheduler", content=b'{"Action":"start","by":"ops"}', headers=curl)
        assert (start.status_code, start.json()["data"]) == (200, {"message": "scheduler started"})


async def test_errors_carry_the_status_as_an_integer_code(service_url: str) -> None:
    """Go clients decode `error.code` into an int: it is the HTTP status; the name is `error.type`."""
    async with httpx.AsyncClient(base_url=service_url) as http:
        bad = await http.post("/scheduler", content=b'{"action":"pause"}')
        missing = await http.get("/nope")
    assert bad.status_code == 400 and bad.json()["error"] | {"message": ""} == {
        "code": 400,
        "type": "VALIDATION_ERROR",
        "message": "",
        "details": [{"field": "action", "message": "Input should be 'start' or 'stop'"}],
    }
    assert (missing.json()["error"]["code"], missing.json()["error"]["type"]) == (404, "NOT_FOUND")
