"""Schemathesis against the real service: no 5xx, every answer as documented, nothing crashes.

One ``sms-dispatch serve`` process (SQLite, the built-in provider simulator, API keys on) is
started for the module; Schemathesis reads its ``/openapi.json`` and sends, per operation, up
to ``MAX_EXAMPLES`` generated requests (valid and invalid ones) with an operate key, checking
each answer against the document: status code, content type, headers and body schema. The
run is deterministic (Hypothesis derandomized) and bounded.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sms_dispatch.api.app import openapi_document
from tests.e2e.conftest import EXE, clean_env, free_port

MAX_EXAMPLES = 20
OPERATE_KEY = "schemathesis-operate-key-0001"
LITERAL_SIBLINGS_OF_AN_ID = {"/messages/retry"}

# The document is built from the routes alone (no I/O), so pytest can list every operation; the
# test below checks that the running service serves this very document.
schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run ``sms-dispatch serve`` on a fresh SQLite file for the module; yield its base URL."""
    folder: Path = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    env = clean_env(
        {
            "SQLITE_PATH": str(folder / "api.db"),
            "API_PORT": str(port),
            "API_KEYS": f"{OPERATE_KEY}:operate",
            "SEED_ON_FIRST_RUN": "5",
            "SCHEDULER_INTERVAL": "1s",
            "LOG_LEVEL": "WARNING",
        }
    )
    log_path = folder / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(EXE), "serve"], env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    pytest.fail(f"service exited: {log_path.read_text()}")
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"service not healthy: {log_path.read_text()}")
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_the_service_serves_the_document_under_test(service_url: str) -> None:
    """The running service's /openapi.json is the document the generated requests come from."""
    assert httpx.get(f"{service_url}/openapi.json").json() == openapi_document()


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_operation_answers_as_documented(case: schemathesis.Case, service_url: str) -> None:
    """Generated requests get no 5xx and answers that match the document, with an operate key."""
    # A request can fit the schema and still break a domain rule JSON Schema cannot state (a real
    # phone number, a cursor this service issued): a 400 for it is right, not a failure.
    excluded = [schemathesis.checks.positive_data_acceptance]
    if case.path in LITERAL_SIBLINGS_OF_AN_ID:
        # GET /messages/retry is GET /messages/{message_id} with the id "retry": a 400 that says
        # it is not a UUID (as for any malformed id), where Schemathesis expects a 405.
        excluded.append(schemathesis.checks.unsupported_method)
    case.call_and_validate(
        base_url=service_url,
        headers={"Authorization": f"Bearer {OPERATE_KEY}"},
        excluded_checks=excluded,
    )
