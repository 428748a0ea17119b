"""The real process as an operator runs it: JSON logs without secrets, keys, `prune`, refusals."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from sms_dispatch.simulator import SimulatorConfig, start_simulator
from tests.e2e.conftest import ServiceProcess, clean_env, free_port, run_cli, wait_until_healthy

PROVIDER_KEY = "INS.provider-secret-7f3a9c"
DB_PASSWORD = "db-secret-5be1d2"
REDIS_PASSWORD = "redis-secret-90ac4e"
PROVIDER_URL_PASSWORD = "url-secret-3e8b1f"
OPERATE_KEY = "operate-secret-key-41d7e0b2"
READ_KEY = "read-secret-key-c93b5a17"
SECRETS = (PROVIDER_KEY, DB_PASSWORD, REDIS_PASSWORD, OPERATE_KEY, READ_KEY)
MESSAGES = 3


def with_password(url: str, password: str, user: str = "") -> str:
    """Return ``url`` with ``user:password@`` put in front of its host."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    login = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else user
    return urlunsplit(parts._replace(netloc=f"{login}:{password}@{host}"))


def json_lines(output: str) -> list[dict[str, Any]]:
    """Return every log line of ``output``, each parsed from JSON (failing on any other line)."""
    lines = []
    for raw in output.splitlines():
        if raw.strip():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise AssertionError(f"not a JSON log line: {raw!r}") from exc
    return lines


async def wait_for_sent(http: httpx.AsyncClient, count: int, headers: dict[str, str]) -> None:
    """Wait until the sent listing holds ``count`` messages."""
    async with asyncio.timeout(30):
        while (await http.get("/messages/sent", headers=headers)).json()["data"]["total"] < count:
            await asyncio.sleep(0.2)


async def test_production_logs_are_json_with_ids_and_no_secret(
    pg_url: str, redis_url: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    """A run with every kind of secret set logs JSON lines with request and message ids, and no secret."""
    operate, read = {"Authorization": f"Bearer {OPERATE_KEY}"}, {"X-API-Key": READ_KEY}
    async with start_simulator(SimulatorConfig(auth_key=PROVIDER_KEY)) as simulator:
        port = free_port()
        env = clean_env(
            {
                "APP_ENV": "production",
                "LOG_LEVEL": "DEBUG",
                "DATABASE_URL": with_password(pg_url, DB_PASSWORD),
                "REDIS_URL": with_password(redis_url, REDIS_PASSWORD),
                "SMS_PROVIDER_URL": with_password(simulator.url, PROVIDER_URL_PASSWORD, user="hook"),
                "SMS_PROVIDER_KEY": PROVIDER_KEY,
                "API_KEYS": f"{OPERATE_KEY}:operate,{READ_KEY}:read",
                "INSTANCE_NAME": "ops-1",
                "API_PORT": str(port),
                "SCHEDULER_INTERVAL": "300ms",
                "MESSAGE_BATCH_SIZE": "10",
            }
        )
        service = ServiceProcess(["serve"], env, tmp_path)
        processes.append(service)
        base = f"http://127.0.0.1:{port}"
        await wait_until_healthy(base, service, timeout_s=30)
        async with httpx.AsyncClient(base_url=base) as http:
            for n in range(MESSAGES):
                created = await http.post(
                    "/messages",
                    json={"to": "+905551111111", "content": f"m{n}"},
                    headers={**operate, "X-Request-ID": f"create-{n}"},
                )
                assert created.status_code == 201, created.text
                assert created.headers["x-request-id"] == f"create-{n}"
            assert (await http.get("/scheduler", headers={"X-API-Key": "wrong-key"})).status_code == 401
            assert (await http.post("/scheduler", json={"action": "stop"}, headers=read)).status_code == 403
            ready = (await http.get("/ready")).json()["data"]
            assert ready == {"database": "ok", "redis": "ok", "cacheBacklog": 0}
            assert (await http.get("/metrics")).status_code == 200
            await wait_for_sent(http, MESSAGES, read)
        assert service.terminate() == 0
        output = service.output()

    assert len(simulator.requests) == MESSAGES  # the provider accepted the key: it was really used
    for secret in SECRETS:
        assert secret not in output, f"a secret reached the log: {secret[:6]}…"
    lines = json_lines(output)

    access = [line for line in lines if line.get("event") == "request"]
    assert {"method", "path", "status", "latency_ms", "request_id"} <= set(access[0])
    creates = [line for line in access if line["request_id"].startswith("create-")]
    assert [(c["method"], c["path"], c["status"]) for c in creates] == [("POST", "/messages", 201)] * MESSAGES
    assert {401, 403} <= {line["status"] for line in access}

    created = [line for line in lines if line.get("event") == "message created"]
    assert sorted(line["request_id"] for line in created) == [f"create-{n}" for n in range(MESSAGES)]

    sent = [line for line in lines if line.get("event") == "message sent"]
    assert len(sent) == MESSAGES
    assert all(line["message_id"] and line["attempt"] == 1 and line["provider_message_id"] for line in sent)

    # Start-up names the database and the provider, without password or credentials.
    (database,) = [line for line in lines if line.get("event") == "database"]
    assert database["url"] == f"postgresql://postgres@127.0.0.1:5432/{pg_url.rsplit('/', 1)[1]}"
    (provider,) = [line for line in lines if line.get("event") == "sending to the SMS provider"]
    assert provider["url"] == simulator.url
    assert PROVIDER_URL_PASSWORD not in output and "hook" not in output
    # Every line names the instance it came from (a fleet's lines can be told apart).
    unnamed = [line for line in lines if line.get("instance") != "ops-1"]
    assert not unnamed, unnamed[:3]


async def test_production_without_keys_refuses_to_start(tmp_path: Path) -> None:
    """`serve` with APP_ENV=production and no API_KEYS exits at once, naming API_KEYS."""
    env = clean_env(
        {"APP_ENV": "production", "SQLITE_PATH": str(tmp_path / "x.db"), "API_PORT": str(free_port())}
    )
    result = run_cli(["serve"], env, tmp_path)
    assert result.returncode == 2
    assert "API_KEYS" in result.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching the database


def insert_old_rows(database: Path, status: str, count: int, age: timedelta) -> None:
    """Insert ``count`` rows finished ``age`` ago, as another program would, with plain SQL."""
    at = (datetime.now(UTC) - age).strftime("%Y-%m-%d %H:%M:%S.%f")
    sent_at = at if status == "SUCCESS" else None
    with sqlite3.connect(database) as connection:
        connection.executemany(
            'INSERT INTO messages (id, "to", content, status, sent_at, created_at, updated_at, next_attempt_at)'
            " VALUES (?, '+905551111111', 'old', ?, ?, ?, ?, ?)",
            [(str(uuid.uuid4()), status, sent_at, at, at, at) for _ in range(count)],
        )
    connection.close()


def test_prune_command_deletes_what_retention_allows(tmp_path: Path) -> None:
    """`sms-dispatch prune` deletes old SUCCESS and FAILED rows, keeps young ones, prints the counts."""
    database = tmp_path / "prune.db"
    env = clean_env({"SQLITE_PATH": str(database), "SEED_ON_FIRST_RUN": "0", "RETENTION_SUCCESS": "7d"})
    assert run_cli(["migrate"], env, tmp_path).returncode == 0
    insert_old_rows(database, "SUCCESS", 5, timedelta(days=8))
    insert_old_rows(database, "SUCCESS", 2, timedelta(days=6))
    insert_old_rows(database, "FAILED", 3, timedelta(days=91))
    result = run_cli(["prune"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "sent": 5,
        "failed": 3,
        "batches": 2,
        "skipped": False,
    }
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (2,)
    connection.close()
