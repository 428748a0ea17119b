"""Start-up: open the database the way a command needs it, bind a port, or stop with one line.

Only ``serve`` (unless ``MIGRATE_ON_START=false``) and ``migrate`` upgrade the schema; every
other command checks that the database holds exactly the schema this build needs and refuses
otherwise, naming what to run. What cannot be reached or used (the database, a port) stops
start-up with ``CannotStart``: one line naming what failed and where (host, port, database,
never a password), which the CLI prints and exits on, without a traceback.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch import __version__
from sms_dispatch.adapters.database import MigrationReport, build_head, create_engine, migrate, schema_state
from sms_dispatch.adapters.schema_versions import MIGRATE_HINT
from sms_dispatch.clock import SystemClock
from sms_dispatch.config import Settings
from sms_dispatch.dispatcher import HEARTBEAT_S, LIVE_HEARTBEATS
from sms_dispatch.errors import CannotStart
from sms_dispatch.logs import get_logger
from sms_dispatch.ports import Clock

log = get_logger(__name__)

SchemaPolicy = Literal["upgrade", "check"]
"""``upgrade``: bring the schema to this build's head (``serve``, ``migrate``); ``check``: refuse
unless it is there already (every other command)."""

LIVE_INSTANCE_S = HEARTBEAT_S * LIVE_HEARTBEATS
"""An instance that sent a heartbeat this recently still runs (as ``GET /scheduler`` counts them)."""


@dataclass(frozen=True, slots=True)
class OpenDatabase:
    """An engine on a database whose schema is this build's, and what the upgrade did (if it ran)."""

    engine: AsyncEngine
    revision: str
    migration: MigrationReport | None


async def open_database(
    settings: Settings, *, schema: SchemaPolicy, clock: Clock, stack: contextlib.AsyncExitStack
) -> OpenDatabase:
    """Open the database, then upgrade or check its schema; ``CannotStart`` says why it cannot be used."""
    url = settings.sqlalchemy_url()
    where = f"{database_label(url)} ({database_source(settings)})"
    if schema == "check":
        _require_database_file(url)
    engine = create_engine(url, pool_size=settings.db_pool_size)
    stack.push_async_callback(engine.dispose)
    try:
        if schema == "upgrade":
            live_since = None
            if not settings.migrate_allow_older_instances:
                live_since = clock.now() - timedelta(seconds=LIVE_INSTANCE_S)
            report = await migrate(
                engine,
                version=__version__,
                older_instances_seen_since=live_since,
                own_instance=settings.instance_name,
            )
            opened = OpenDatabase(engine, report.revision_after or report.head, report)
        else:
            state = await schema_state(engine)
            refusal = state.refusal(__version__)
            if refusal is not None:
                raise CannotStart(refusal)
            opened = OpenDatabase(engine, state.head, None)
    except (DBAPIError, OSError) as exc:  # TimeoutError and ConnectionRefusedError are OSErrors
        log.debug("the database cannot be used", exc_info=True)
        raise CannotStart(f"cannot use the database {where}: {failure_reason(exc)}") from None
    log.info("database", url=database_label(url), schema=opened.revision)
    return opened


async def check_database(settings: Settings) -> None:
    """Open the database and check its schema, then close it; ``CannotStart`` says what is wrong."""
    async with contextlib.AsyncExitStack() as stack:
        await open_database(settings, schema="check", clock=SystemClock(), stack=stack)


def _require_database_file(url: URL) -> None:
    """Refuse a SQLite file that does not exist yet, without creating it (only ``migrate`` does)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).exists():
        raise CannotStart(
            f"database schema is at none (no database file {url.database} yet), this version needs"
            f" {build_head()}: {MIGRATE_HINT} (or `sms-dispatch serve`, which migrates) first"
        )


def describe_migration(report: MigrationReport) -> str:
    """Return what ``migrate`` did, in words: already at head, created, adopted or upgraded."""
    after = report.revision_after
    if report.revision_before == after:
        return f"database schema already at head ({after})"
    if report.created_messages_table:
        return f"database schema created at {after}"
    if report.adopted_existing_table:
        return f"database schema created at {after}, adopting the Go service's messages table"
    return f"database schema upgraded from {report.revision_before} to {after}"


def database_label(url: URL) -> str:
    """Return where the database is, for a log line or an error: no password, no driver name."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite:///{url.database or ':memory:'}"
    user = f"{url.username}@" if url.username else ""
    port = f":{url.port}" if url.port else ""
    return f"{backend}://{user}{url.host or 'localhost'}{port}/{url.database or ''}"


def database_source(settings: Settings) -> str:
    """Return the variables that chose the database, so an error says what to change."""
    if settings.database_url is not None:
        return "DATABASE_URL"
    if settings.db_host is not None:
        return "DB_HOST, DB_PORT, DB_USER, DB_NAME"
    return "SQLITE_PATH"


def failure_reason(exc: BaseException) -> str:
    """Return why a connection or statement failed, in one line."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig) or type(exc.orig).__name__
    elif isinstance(exc, ConnectionRefusedError):
        text = "connection refused (nothing listens there, or the server is down)"
    elif isinstance(exc, socket.gaierror):
        text = f"host not found ({exc.strerror})"
    elif isinstance(exc, TimeoutError):
        text = "no answer in time"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text.strip().splitlines()[0]


def listen_socket(host: str, port: int, *, setting: str) -> socket.socket:
    """Bind and return a listening TCP socket; ``CannotStart`` names ``setting`` when it cannot."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        # create_server adds the address to strerror; the message names it once, in front.
        why = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
        why = why.split(" (while attempting", 1)[0]
        raise CannotStart(f"cannot listen on {host}:{port} ({setting}): {why.lower()}") from None
