"""The ``sms-dispatch`` command: serve, worker, migrate, seed, send, dispatch, provider-sim."""

import asyncio
import json
import signal
from collections.abc import Coroutine
from dataclasses import asdict
from typing import Annotated, Any, NoReturn

import typer
import uvicorn

from sms_dispatch.config import Settings, load_settings
from sms_dispatch.errors import ConfigError, InvalidInput
from sms_dispatch.logs import configure_logging, get_logger

app = typer.Typer(
    help="Send the SMS messages waiting in a database through a webhook SMS provider.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = get_logger("sms_dispatch.cli")


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _die(f"configuration error: {exc.message}")
    configure_logging(
        json_lines=settings.app_env == "production",
        level=settings.log_level,
        secrets=settings.secret_values(),
    )
    return settings


def _require_provider(settings: Settings) -> None:
    """Stop a sending command when the settings name no provider (and the simulator is not allowed)."""
    from sms_dispatch.provider_choice import choose_provider

    try:
        choose_provider(settings)
    except ConfigError as exc:
        _die(f"configuration error: {exc.message}")


def _die(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"sms-dispatch: {message}", err=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default API_PORT).")] = None,
) -> None:
    """Run the HTTP API and the dispatcher in one process."""
    from sms_dispatch.api.security import check_api_keys
    from sms_dispatch.provider_choice import choose_provider

    settings = _settings()
    try:
        check_api_keys(settings)
        choose_provider(settings)
    except ConfigError as exc:
        _die(f"configuration error: {exc.message}")
    _run(_serve(settings, host or settings.api_host, port or settings.api_port))


async def _serve(settings: Settings, host: str, port: int) -> None:
    from sms_dispatch.api.app import create_app
    from sms_dispatch.bootstrap import bootstrap

    # uvicorn re-raises the signal that stopped it once it returns; a handler of our own
    # makes that a no-op, so the dispatcher drains before the process ends.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    async with bootstrap(settings) as services:
        config = uvicorn.Config(create_app(services), host=host, port=port, log_config=None, access_log=False)
        log.info("serving", url=f"http://{host}:{port}/", swagger=f"http://{host}:{port}/swagger/")
        await uvicorn.Server(config).serve()
        log.info("shutting down: draining the dispatcher")


@app.command()
def worker(
    processes: Annotated[
        int, typer.Option(min=1, max=256, help="Dispatcher processes to run (PostgreSQL only beyond 1).")
    ] = 1,
) -> None:
    """Run the dispatcher without the HTTP API (until SIGTERM or Ctrl-C)."""
    settings = _settings()
    _require_provider(settings)
    if processes > 1:
        from sms_dispatch.processes import run_worker_processes, sqlite_refusal

        refusal = sqlite_refusal(settings, processes)
        if refusal:
            _die(refusal)
        raise typer.Exit(run_worker_processes(settings, processes))
    _run(_worker(settings))


async def _worker(settings: Settings) -> None:
    from sms_dispatch.bootstrap import bootstrap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with bootstrap(settings):
        await stop.wait()
        log.info("shutting down: draining the dispatcher")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (adopts the Go service's table)."""
    settings = _settings()
    _run(_migrate(settings))


async def _migrate(settings: Settings) -> None:
    from sms_dispatch.adapters.database import create_engine, migrate

    engine = create_engine(settings.sqlalchemy_url(), pool_size=1)
    try:
        report = await migrate(engine)
    finally:
        await engine.dispose()
    typer.echo(f"database at head ({'created' if report.created_messages_table else 'upgraded'} the schema)")


@app.command()
def seed(count: Annotated[int, typer.Option(min=1, max=10_000_000, help="How many messages.")] = 10) -> None:
    """Insert sample PENDING messages, like the Go service's seed, in batches."""
    settings = _settings()
    stored, elapsed_s = _run(_seed(settings, count))
    typer.echo(f"seeded {stored} messages in {elapsed_s:.1f} s ({stored / max(elapsed_s, 1e-9):,.0f} rows/s)")


async def _seed(settings: Settings, count: int) -> tuple[int, float]:
    from sms_dispatch.bootstrap import bootstrap
    from sms_dispatch.cli_progress import seed_progress

    stored = 0
    async with bootstrap(settings, run_dispatcher=False) as services:
        with seed_progress(count) as progress:
            async for batch in services.messages.seed(count):
                stored += batch
                progress.advance(batch)
    return stored, progress.elapsed_s


@app.command()
def send(
    to: Annotated[str, typer.Option(help="Recipient in international format, e.g. +905551111111.")],
    content: Annotated[str, typer.Option(help="The text.")],
) -> None:
    """Queue one message; the dispatcher sends it with a later batch."""
    settings = _settings()
    _run(_send(settings, to, content))


async def _send(settings: Settings, to: str, content: str) -> None:
    from sms_dispatch.api.schemas import MessagePublic
    from sms_dispatch.bootstrap import bootstrap

    async with bootstrap(settings, run_dispatcher=False) as services:
        try:
            message = await services.messages.create(to, content)
        except InvalidInput as exc:
            _die(f"invalid message: {exc.message}")
    typer.echo(MessagePublic.from_domain(message).model_dump_json(by_alias=True, indent=2))


@app.command()
def dispatch(
    once: Annotated[bool, typer.Option("--once", help="Run one batch now and exit.")] = False,
) -> None:
    """Run one batch now, whatever the schedule (``--once``); print what it did."""
    if not once:
        _die("only --once is supported here; `sms-dispatch worker` runs the dispatcher continuously")
    settings = _settings()
    _require_provider(settings)
    _run(_dispatch_once(settings))


async def _dispatch_once(settings: Settings) -> None:
    from sms_dispatch.bootstrap import bootstrap

    async with bootstrap(settings, run_dispatcher=False) as services:
        report = await services.dispatcher.run_once()
    summary = {k: v for k, v in asdict(report).items() if k != "sent_ids"}
    typer.echo(json.dumps(summary))


@app.command()
def prune() -> None:
    """Delete the messages past their retention now (RETENTION_SUCCESS, RETENTION_FAILED); print counts."""
    settings = _settings()
    _run(_prune(settings))


async def _prune(settings: Settings) -> None:
    from sms_dispatch.bootstrap import bootstrap

    async with bootstrap(settings, run_dispatcher=False) as services:
        report = await services.pruner.prune()
    summary = {"sent": report.sent, "failed": report.failed, "batches": report.batches}
    typer.echo(json.dumps({**summary, "skipped": report.skipped}))


@app.command("provider-sim")
def provider_sim(
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 9090,
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
        _die(f"invalid simulator knobs: {exc}")
    _run(serve_simulator_forever(config, host, port))


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":  # ``python -m sms_dispatch.cli``: how ``worker --processes`` starts its children
    main()
