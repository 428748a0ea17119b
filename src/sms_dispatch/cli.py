"""The ``sms-dispatch`` command: serve, worker, migrate, seed, send, dispatch, prune, provider-sim.

Every command checks its arguments and settings before it opens anything; what it cannot use
(the database, a port, a schema that is not this build's) stops it with one line and a
non-zero exit (``cli_support.py``).
"""

import asyncio
import contextlib
import json
import signal
import socket
from dataclasses import asdict
from typing import Annotated, Any

import typer
import uvicorn

from sms_dispatch.cli_support import (
    EXIT_CONFIG,
    EXIT_REFUSED,
    NEEDS_SCHEMA,
    AllowOlderInstances,
    die,
    listen,
    print_version,
    require,
    run,
    settings_for_command,
)
from sms_dispatch.config import Settings
from sms_dispatch.errors import InvalidInput
from sms_dispatch.logs import configure_logging, get_logger

app = typer.Typer(
    help="Send the SMS messages waiting in a database through a webhook SMS provider.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = get_logger("sms_dispatch.cli")


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Send the SMS messages waiting in a database through a webhook SMS provider."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default API_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Listen port (default API_PORT).")
    ] = None,
    allow_older_instances: AllowOlderInstances = False,
) -> None:
    """Run the HTTP API and the dispatcher in one process; upgrade the schema first (unless
    MIGRATE_ON_START=false)."""
    from sms_dispatch.api.security import check_api_keys
    from sms_dispatch.provider_choice import choose_provider

    settings = settings_for_command(
        **({"migrate_allow_older_instances": True} if allow_older_instances else {})
    )
    require(check_api_keys, settings)
    require(choose_provider, settings)
    # Listen before anything else: a serve that cannot take its port must send nothing.
    listener = listen(host or settings.api_host, port or settings.api_port, "API_HOST, API_PORT")
    with contextlib.closing(listener):
        run(_serve(settings, listener))


async def _serve(settings: Settings, listener: socket.socket) -> None:
    from sms_dispatch.api.app import create_app
    from sms_dispatch.bootstrap import bootstrap

    # uvicorn re-raises the signal that stopped it once it returns; a handler of our own
    # makes that a no-op, so the dispatcher drains before the process ends.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    async with bootstrap(settings, schema="upgrade" if settings.migrate_on_start else "check") as services:
        config = uvicorn.Config(create_app(services), log_config=None, access_log=False)
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log.info("serving", url=f"http://{shown}:{port}/", swagger=f"http://{shown}:{port}/swagger/")
        await uvicorn.Server(config).serve(sockets=[listener])
        log.info("shutting down: draining the dispatcher")


@app.command()
def worker(
    processes: Annotated[
        int, typer.Option(min=1, max=256, help="Dispatcher processes to run (PostgreSQL only beyond 1).")
    ] = 1,
) -> None:
    """Run the dispatcher without the HTTP API (until SIGTERM or Ctrl-C); never migrates."""
    from sms_dispatch.provider_choice import choose_provider

    settings = settings_for_command()
    require(choose_provider, settings)
    if processes > 1:
        from sms_dispatch.processes import run_worker_processes, sqlite_refusal
        from sms_dispatch.startup import check_database

        refusal = sqlite_refusal(settings, processes)
        if refusal:
            die(refusal, EXIT_CONFIG)
        run(check_database(settings))  # one line here, rather than one per child
        raise typer.Exit(run_worker_processes(settings, processes))
    run(_worker(settings))


async def _worker(settings: Settings) -> None:
    from sms_dispatch.bootstrap import bootstrap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with bootstrap(settings, schema="check"):
        await stop.wait()
        log.info("shutting down: draining the dispatcher")


@app.command()
def migrate(allow_older_instances: AllowOlderInstances = False) -> None:
    """Create or upgrade the database schema (adopts the Go service's table); print what it did."""
    settings = settings_for_command(
        **({"migrate_allow_older_instances": True} if allow_older_instances else {})
    )
    typer.echo(run(_migrate(settings)))


async def _migrate(settings: Settings) -> str:
    from sms_dispatch.clock import SystemClock
    from sms_dispatch.startup import describe_migration, open_database

    async with contextlib.AsyncExitStack() as stack:
        opened = await open_database(settings, schema="upgrade", clock=SystemClock(), stack=stack)
    assert opened.migration is not None  # "upgrade" always reports what it did
    return describe_migration(opened.migration)


@app.command(help="Insert sample PENDING messages, like the Go service's seed, in batches." + NEEDS_SCHEMA)
def seed(count: Annotated[int, typer.Option(min=1, max=10_000_000, help="How many messages.")] = 10) -> None:
    """Insert sample PENDING messages."""
    settings = settings_for_command()
    stored, elapsed_s = run(_seed(settings, count))
    typer.echo(f"seeded {stored} messages in {elapsed_s:.1f} s ({stored / max(elapsed_s, 1e-9):,.0f} rows/s)")


async def _seed(settings: Settings, count: int) -> tuple[int, float]:
    from sms_dispatch.bootstrap import bootstrap_tools
    from sms_dispatch.cli_progress import seed_progress

    stored = 0
    async with bootstrap_tools(settings) as tools:
        with seed_progress(count) as progress:
            async for batch in tools.messages.seed(count):
                stored += batch
                progress.advance(batch)
    return stored, progress.elapsed_s


@app.command(help="Queue one message; the dispatcher sends it with a later batch." + NEEDS_SCHEMA)
def send(
    to: Annotated[str, typer.Option(help="Recipient in international format, e.g. +905551111111.")],
    content: Annotated[str, typer.Option(help="The text.")],
) -> None:
    """Queue one message."""
    from sms_dispatch.api.schemas import MessagePublic
    from sms_dispatch.domain import validate_message

    settings = settings_for_command()
    try:  # before anything is opened: a bad message creates no database and starts nothing
        validate_message(to, content, settings.message_max_length)
    except InvalidInput as exc:
        die(f"invalid message: {exc.message}", EXIT_CONFIG)
    message = run(_send(settings, to, content))
    typer.echo(MessagePublic.from_domain(message).model_dump_json(by_alias=True, indent=2))


async def _send(settings: Settings, to: str, content: str) -> Any:
    from sms_dispatch.bootstrap import bootstrap_tools

    async with bootstrap_tools(settings) as tools:
        return await tools.messages.create(to, content)


@app.command()
def dispatch(
    once: Annotated[bool, typer.Option("--once", help="Run one batch now and exit.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Send even while the scheduler is stopped.")] = False,
) -> None:
    """Run one batch now, whatever the schedule (``--once``); print what it did. Refused while the
    fleet's scheduler is stopped, unless ``--force``."""
    from sms_dispatch.provider_choice import choose_provider

    if not once:
        die(
            "only --once is supported here; `sms-dispatch worker` runs the dispatcher continuously",
            EXIT_CONFIG,
        )
    settings = settings_for_command()
    require(choose_provider, settings)
    summary = run(_dispatch_once(settings, force=force))
    if summary is None:
        die(
            "the scheduler is stopped for the whole fleet, so no batch was sent; start it"
            ' (POST /scheduler {"action": "start"}, or the dashboard) or pass --force',
            EXIT_REFUSED,
        )
    typer.echo(json.dumps(summary))


async def _dispatch_once(settings: Settings, *, force: bool) -> dict[str, Any] | None:
    from sms_dispatch.bootstrap import bootstrap

    async with bootstrap(settings, run_dispatcher=False, schema="check") as services:
        if not force and not (await services.store.scheduler_state()).running:
            return None
        report = await services.dispatcher.run_once()
    return {k: v for k, v in asdict(report).items() if k != "sent_ids"}


@app.command(
    help="Delete the messages past their retention now (RETENTION_SUCCESS, RETENTION_FAILED);"
    " print counts." + NEEDS_SCHEMA
)
def prune() -> None:
    """Delete the messages past their retention now."""
    settings = settings_for_command()
    typer.echo(json.dumps(run(_prune(settings))))


async def _prune(settings: Settings) -> dict[str, Any]:
    from sms_dispatch.bootstrap import bootstrap_tools

    async with bootstrap_tools(settings) as tools:
        report = await tools.pruner.prune()
    summary = {"sent": report.sent, "failed": report.failed, "batches": report.batches}
    return {**summary, "skipped": report.skipped}


@app.command("provider-sim")
def provider_sim(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Listen port.")] = 9090,
    latency_ms: Annotated[float, typer.Option(min=0, help="Delay before every answer.")] = 0.0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share answered with --error-status.")
    ] = 0.0,
    error_status: Annotated[int, typer.Option(min=400, max=599, help="Status of error answers.")] = 500,
    retry_after_s: Annotated[float | None, typer.Option(min=0, help="Retry-After on error answers.")] = None,
    hang_rate: Annotated[float, typer.Option(min=0, max=1, help="Share never answered in time.")] = 0.0,
    reset_rate: Annotated[float, typer.Option(min=0, max=1, help="Share whose connection is dropped.")] = 0.0,
    broken_body_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share answered 202 with a broken body.")
    ] = 0.0,
    auth_key: Annotated[str | None, typer.Option(help="Require this x-ins-auth-key (403 otherwise).")] = None,
) -> None:
    """Run a provider simulator that answers like webhook.site, with fault knobs."""
    from sms_dispatch.simulator import SimulatorConfig, serve_simulator_forever

    configure_logging(json_lines=False)
    try:
        config = SimulatorConfig(
            latency_ms=latency_ms,
            error_rate=error_rate,
            error_status=error_status,
            retry_after_s=retry_after_s,
            hang_rate=hang_rate,
            reset_rate=reset_rate,
            broken_body_rate=broken_body_rate,
            auth_key=auth_key,
        )
    except ValueError as exc:
        die(f"invalid simulator knobs: {exc}", EXIT_CONFIG)
    listener = listen(host, port, "--host, --port")
    with contextlib.closing(listener):
        run(serve_simulator_forever(config, listener))


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":  # ``python -m sms_dispatch.cli``: how ``worker --processes`` starts its children
    main()
