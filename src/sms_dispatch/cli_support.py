"""What every ``sms-dispatch`` command shares: reading the settings, running the async part, and
stopping with one line and an exit code (2: a bad argument or setting; 3: start-up cannot go
on, for the database, a port or the schema; 1: an operation refused) instead of a traceback."""

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn

import structlog
import typer

from sms_dispatch import __version__
from sms_dispatch.config import Settings, load_settings
from sms_dispatch.errors import CannotStart, ConfigError
from sms_dispatch.logs import configure_logging

EXIT_REFUSED = 1
EXIT_CONFIG = 2
EXIT_CANNOT_START = 3

AllowOlderInstances = Annotated[
    bool,
    typer.Option(
        "--allow-older-instances",
        help="Upgrade the schema even while instances of an older version send heartbeats"
        " (as MIGRATE_ALLOW_OLDER_INSTANCES=true).",
    ),
]
NEEDS_SCHEMA = (
    " Needs a database at this version's schema: run `sms-dispatch migrate` (or a first `serve`) before."
)


def print_version(value: bool) -> None:
    """Print the version and the schema revision it needs, then exit (the ``--version`` callback)."""
    if value:
        from sms_dispatch.adapters.database import build_head

        typer.echo(f"sms-dispatch {__version__} (database schema {build_head()})")
        raise typer.Exit()


def settings_for_command(**overrides: Any) -> Settings:
    """Read the settings (with ``overrides``), set up logging; a bad setting ends the command."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        die(f"configuration error: {exc.message}", EXIT_CONFIG)
    if overrides:
        settings = settings.model_copy(update=overrides)
    configure_logging(
        json_lines=settings.app_env == "production",
        level=settings.log_level,
        secrets=settings.secret_values(),
    )
    # Every line of this process names its instance (the worker --processes parent's too).
    structlog.contextvars.bind_contextvars(instance=settings.instance_name)
    return settings


def require(check: Callable[[Settings], object], settings: Settings) -> None:
    """Run a check of the settings; a ``ConfigError`` ends the command with its one line."""
    try:
        check(settings)
    except ConfigError as exc:
        die(f"configuration error: {exc.message}", EXIT_CONFIG)


def die(message: str, code: int) -> NoReturn:
    """End the command with ``sms-dispatch: <message>`` on standard error and exit ``code``."""
    typer.echo(f"sms-dispatch: {message}", err=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on uvloop; a setting or start-up failure ends the command with its one line."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        runner: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(coro)
    except ConfigError as exc:
        die(f"configuration error: {exc.message}", EXIT_CONFIG)
    except CannotStart as exc:
        die(exc.message, EXIT_CANNOT_START)


def listen(host: str, port: int, setting: str) -> socket.socket:
    """Bind a listening socket on ``host:port``; a port in use ends the command naming ``setting``."""
    from sms_dispatch.startup import listen_socket

    try:
        return listen_socket(host, port, setting=setting)
    except CannotStart as exc:
        die(exc.message, EXIT_CANNOT_START)
