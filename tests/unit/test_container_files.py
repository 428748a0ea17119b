"""The container files, checked without a Docker engine: compose.yaml, the Dockerfile, .dockerignore."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sms_dispatch.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SEED_VARIABLES = {
    "API_HOST",
    "API_PORT",
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
    "DB_SSLMODE",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "SMS_PROVIDER_URL",
    "SMS_PROVIDER_KEY",
    "SCHEDULER_INTERVAL",
    "SCHEDULER_BATCH_TIMEOUT",
    "MESSAGE_BATCH_SIZE",
    "MESSAGE_MAX_WORKERS",
    "MESSAGE_PER_MESSAGE_TIMEOUT",
}
"""The Go service's .env: the service in compose names every one of them."""
PRODUCTION_VARIABLES = {"APP_ENV", "API_KEYS"}
DATABASE_VARIABLES = {"DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside a container the API must listen beyond loopback


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml, parsed."""
    parsed: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return parsed


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """The Dockerfile's text, continuation lines joined."""
    return (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment as a mapping (the list form too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def settings_variables() -> set[str]:
    """Return every environment variable ``Settings`` reads."""
    return {str(field.alias) for field in Settings.model_fields.values() if field.alias}


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    """PostgreSQL, Redis, the one-shot migration, the service and the provider simulator are there."""
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "sms-dispatch", "provider-sim"}


def test_every_service_has_an_image_or_a_build(compose: dict[str, Any]) -> None:
    """Each service says what it runs."""
    for name, service in compose["services"].items():
        assert service.get("image") or service.get("build"), name


def test_service_names_every_variable_it_needs(compose: dict[str, Any]) -> None:
    """The service's environment names the seed's variables plus APP_ENV and API_KEYS."""
    names = set(environment(compose["services"]["sms-dispatch"]))
    assert names >= SEED_VARIABLES | PRODUCTION_VARIABLES, sorted(SEED_VARIABLES - names)


@pytest.mark.parametrize("service", ["sms-dispatch", "migrate"])
def test_every_variable_given_is_one_the_service_reads(compose: dict[str, Any], service: str) -> None:
    """No typo: each variable given to the app's containers is a setting's name."""
    unknown = set(environment(compose["services"][service])) - settings_variables()
    assert not unknown, sorted(unknown)


def test_the_service_listens_on_all_interfaces_in_production(compose: dict[str, Any]) -> None:
    """Inside a container the API listens on 0.0.0.0 and runs with APP_ENV=production and keys."""
    env = environment(compose["services"]["sms-dispatch"])
    assert env["API_HOST"] == ALL_INTERFACES and env["APP_ENV"] == "production" and env["API_KEYS"]


def test_migrate_runs_once_against_the_database(compose: dict[str, Any]) -> None:
    """The migration is a one-shot `migrate` with the database variables, after PostgreSQL is healthy."""
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert set(environment(migrate)) >= DATABASE_VARIABLES
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"


def test_only_the_migrate_service_changes_the_schema(compose: dict[str, Any]) -> None:
    """The service checks the schema the one-shot migrate left (MIGRATE_ON_START=false); migrate
    can be told to upgrade under older instances from the .env."""
    services = compose["services"]
    assert environment(services["sms-dispatch"])["MIGRATE_ON_START"] == "false"
    assert "MIGRATE_ALLOW_OLDER_INSTANCES" in environment(services["migrate"])


def test_service_starts_after_the_migration_completes(compose: dict[str, Any]) -> None:
    """The service waits for migrate to finish successfully, and for Redis to be healthy."""
    depends = compose["services"]["sms-dispatch"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"


def test_both_ends_agree_on_the_database_and_provider(compose: dict[str, Any]) -> None:
    """The service's DB_* match PostgreSQL's, and it sends to the simulator listening on 0.0.0.0."""
    services = compose["services"]
    service, postgres = environment(services["sms-dispatch"]), environment(services["postgres"])
    assert (service["DB_USER"], service["DB_NAME"]) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert service["DB_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    simulator = services["provider-sim"]["command"]
    assert simulator[:3] == ["provider-sim", "--host", ALL_INTERFACES]
    port = simulator[simulator.index("--port") + 1]
    assert f"provider-sim:{port}" in service["SMS_PROVIDER_URL"]


def test_dockerfile_is_multi_stage(dockerfile: str) -> None:
    """A builder stage with uv sync --frozen --no-dev, and a slim runtime stage copying from it."""
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, stages
    assert "slim" in stages[-1][0]
    assert re.search(r"uv sync --frozen --no-dev", dockerfile)
    assert re.search(r"^COPY --from=builder", dockerfile, re.MULTILINE)


def test_dockerfile_runs_as_a_non_root_user(dockerfile: str) -> None:
    """The last USER is neither root nor uid 0."""
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_checks_health_on_ready(dockerfile: str) -> None:
    """HEALTHCHECK asks /ready, with Python (the slim image has no curl)."""
    [check] = re.findall(r"^HEALTHCHECK\s+(.*)$", dockerfile, re.MULTILINE)
    assert "/ready" in check and "python" in check and "curl" not in check


def test_dockerfile_exposes_the_api_on_all_interfaces(dockerfile: str) -> None:
    """The image exposes 8080 and sets API_HOST=0.0.0.0."""
    assert re.search(r"^EXPOSE\s+8080\b", dockerfile, re.MULTILINE)
    assert f"API_HOST={ALL_INTERFACES}" in dockerfile


def test_dockerignore_keeps_the_context_small() -> None:
    """The build context leaves out the virtualenv, git, tests and local databases."""
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", "tests", "*.db", ".env"} <= ignored
