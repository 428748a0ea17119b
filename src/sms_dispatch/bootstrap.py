"""The one composition root: Settings in, running services out, closed in reverse order.

``bootstrap`` builds what the sending commands use (``serve``, ``worker``, ``dispatch``);
``bootstrap_tools`` the little the others need (``seed``, ``send``, ``prune``: no provider, no
cache). The engine comes from ``startup.open_database``, which also upgrades or checks the
schema; nothing else in the package builds an engine, a client or a task, and nothing here
runs at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.aiohttp_provider import AiohttpSmsProvider, create_aiohttp_session
from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.pg_notify import InProcessNewMessageSignal, PgNewMessageSignal
from sms_dispatch.adapters.redis_cache import RedisSentCache, create_redis_client
from sms_dispatch.adapters.reqwest_provider import ReqwestSmsProvider, create_reqwest_client
from sms_dispatch.adapters.sql_column_limits import content_max_length
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.clock import SystemClock
from sms_dispatch.config import Settings
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.domain import MessageRules
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.metrics import ServiceMetrics
from sms_dispatch.observability.redaction import SecretRedactor
from sms_dispatch.operations import OperatorActions
from sms_dispatch.ports import Clock, NewMessageSignal, SentCache, SmsProvider
from sms_dispatch.provider_choice import ProviderChoice, choose_provider, shown_url
from sms_dispatch.pump import Pump
from sms_dispatch.retention import Pruner, RetentionPolicy
from sms_dispatch.service import MessageService
from sms_dispatch.simulator import start_simulator
from sms_dispatch.startup import SchemaPolicy, describe_migration, open_database

log = get_logger(__name__)

SHUTDOWN_GRACE_S = 30.0


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the entrypoints (API, CLI) use."""

    settings: Settings
    engine: AsyncEngine
    store: SqlMessageStore
    cache: SentCache
    messages: MessageService
    deliverer: Deliverer
    dispatcher: Dispatcher
    provider_url: str
    provider_simulator: bool
    """True when the built-in simulator stands in for the provider: nothing is delivered."""
    clock: Clock
    operations: OperatorActions
    metrics: ServiceMetrics
    pruner: Pruner


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    """Return the delivery rules the settings describe."""
    return DeliveryPolicy(
        batch_size=settings.message_batch_size,
        max_workers=settings.message_max_workers,
        per_message_timeout_s=settings.message_per_message_timeout_s,
        batch_timeout_s=settings.scheduler_batch_timeout_s,
        lease_s=settings.lease_s,
        max_attempts=settings.message_max_attempts,
        retry_base_s=settings.message_retry_base_s,
        retry_max_delay_s=settings.message_retry_max_delay_s,
        max_length=settings.message_max_length,
        recipient_check=settings.recipient_check,
        cache_ttl_s=settings.cache_ttl_s,
    )


async def message_rules(settings: Settings, engine: AsyncEngine) -> MessageRules:
    """Return the rules new messages must meet: the settings', and the content column's own limit."""
    stored = await content_max_length(engine)
    if stored is not None and stored < settings.message_max_length:
        log.warning(
            "messages.content holds fewer characters than MESSAGE_MAX_LENGTH: longer content is refused",
            column_limit=stored,
            message_max_length=settings.message_max_length,
        )
    return MessageRules(settings.message_max_length, settings.recipient_check, stored)


@contextlib.asynccontextmanager
async def bootstrap(
    settings: Settings, *, run_dispatcher: bool = True, schema: SchemaPolicy = "upgrade"
) -> AsyncIterator[Services]:
    """Build and start the services; on exit drain the dispatcher and close everything.

    ``schema="upgrade"`` migrates (``serve``); ``"check"`` refuses a schema that is not this
    build's (``worker``, ``dispatch``). ``ConfigError`` when the settings name no provider,
    ``CannotStart`` when the database cannot be used: both before anything is sent.
    """
    clock: Clock = SystemClock()
    choice = choose_provider(settings)
    async with contextlib.AsyncExitStack() as stack:
        # Every line this process logs from here on names its instance (worker --processes children too).
        stack.enter_context(structlog.contextvars.bound_contextvars(instance=settings.instance_name))
        database = await open_database(settings, schema=schema, clock=clock, stack=stack)
        engine = database.engine
        store = SqlMessageStore(engine)
        if settings.uses_embedded_database:
            log.info(
                "using the embedded SQLite database; single instance only",
                path=str(settings.sqlite_path),
            )

        cache = await _open_cache(settings, clock, stack)
        provider_url = await _provider_url(choice, stack)
        provider = open_provider(settings, provider_url, stack)

        rules = await message_rules(settings, engine)
        messages = MessageService(store=store, cache=cache, clock=clock, rules=rules)
        migration = database.migration
        if migration is not None:
            log.info(describe_migration(migration))
            if settings.uses_embedded_database and migration.created_messages_table:
                await _seed_first_run(messages, settings.seed_on_first_run)

        metrics = ServiceMetrics()
        deliverer = Deliverer(
            store=store,
            provider=provider,
            cache=cache,
            clock=clock,
            policy=delivery_policy(settings),
            instance_name=settings.instance_name,
            observer=metrics,
            redact=SecretRedactor(settings.secret_values()).redact,
        )
        metrics.watch(deliverer.counters)
        continuous = run_dispatcher and settings.scheduler_interval_s == 0
        dispatcher = Dispatcher(
            deliverer=deliverer,
            control=store,
            clock=clock,
            interval_s=settings.scheduler_interval_s,
            instance_name=settings.instance_name,
            pump=await _open_pump(settings, engine, store, deliverer, clock, stack) if continuous else None,
        )
        if run_dispatcher:
            task = asyncio.create_task(dispatcher.run(), name="dispatcher")
            stack.push_async_callback(dispatcher.shutdown, task, grace_s=SHUTDOWN_GRACE_S)
        else:
            stack.push_async_callback(deliverer.drain_cache_writes)
        pruner = Pruner(store=store, control=store, clock=clock, policy=retention_policy(settings))
        if run_dispatcher:
            _run_retention(pruner, stack)
        yield Services(
            settings=settings,
            engine=engine,
            store=store,
            cache=cache,
            messages=messages,
            deliverer=deliverer,
            dispatcher=dispatcher,
            provider_url=provider_url,
            provider_simulator=choice.simulator,
            clock=clock,
            operations=OperatorActions(store=store, clock=clock),
            metrics=metrics,
            pruner=pruner,
        )


@dataclass(frozen=True, slots=True)
class Tools:
    """What the one-off commands that send nothing use (``seed``, ``send``, ``prune``)."""

    settings: Settings
    store: SqlMessageStore
    messages: MessageService
    pruner: Pruner


@contextlib.asynccontextmanager
async def bootstrap_tools(settings: Settings) -> AsyncIterator[Tools]:
    """Open the database for a command that sends nothing: no provider, no cache, schema checked only."""
    clock: Clock = SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(structlog.contextvars.bound_contextvars(instance=settings.instance_name))
        database = await open_database(settings, schema="check", clock=clock, stack=stack)
        store = SqlMessageStore(database.engine)
        # Creating messages reads no cache; an in-process one saves connecting to Redis for nothing.
        rules = await message_rules(settings, database.engine)
        messages = MessageService(store=store, cache=InMemorySentCache(clock), clock=clock, rules=rules)
        pruner = Pruner(store=store, control=store, clock=clock, policy=retention_policy(settings))
        yield Tools(settings=settings, store=store, messages=messages, pruner=pruner)


async def _provider_url(choice: ProviderChoice, stack: contextlib.AsyncExitStack) -> str:
    """Return the URL to send to, starting the built-in simulator when it was chosen; log which."""
    if choice.url is not None:
        log.info("sending to the SMS provider", url=shown_url(choice.url))
        return choice.url
    simulator = await stack.enter_async_context(start_simulator())
    log.warning(
        "sending to the built-in provider simulator: nothing is delivered",
        url=simulator.url,
        because=choice.reason,
    )
    return simulator.url


async def _seed_first_run(messages: MessageService, count: int) -> None:
    """Give a new embedded database sample messages, so a first ``serve`` shows the whole flow."""
    if count:
        async for _ in messages.seed(count):
            pass
        log.info("first run: seeded sample messages", count=count)


def retention_policy(settings: Settings) -> RetentionPolicy:
    """Return the retention rules the settings describe."""
    return RetentionPolicy(
        success_s=settings.retention_success_s,
        failed_s=settings.retention_failed_s,
        interval_s=settings.retention_interval_s,
        batch_size=settings.retention_batch_size,
    )


def _run_retention(pruner: Pruner, stack: contextlib.AsyncExitStack) -> None:
    """Run retention as a side task of the dispatcher process; stop it (between batches) on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(pruner.run(stop), name="retention")

    async def _stop() -> None:
        stop.set()
        await task

    stack.push_async_callback(_stop)


async def _open_pump(
    settings: Settings,
    engine: AsyncEngine,
    store: SqlMessageStore,
    deliverer: Deliverer,
    clock: Clock,
    stack: contextlib.AsyncExitStack,
) -> Pump:
    """Build continuous mode's sender pool, woken by PostgreSQL NOTIFY where there is one."""
    signal: NewMessageSignal = InProcessNewMessageSignal()
    if engine.dialect.name == "postgresql":
        listener = PgNewMessageSignal(engine.url)
        await listener.start()
        stack.push_async_callback(listener.close)
        signal = listener
    return Pump(
        deliverer=deliverer,
        control=store,
        signal=signal,
        clock=clock,
        rate_limit_per_s=settings.message_rate_limit_per_s,
    )


async def _open_cache(settings: Settings, clock: Clock, stack: contextlib.AsyncExitStack) -> SentCache:
    url = settings.redis_connection_url()
    if url is None:
        log.info("REDIS_HOST/REDIS_URL not set: caching sent messages in process")
        return InMemorySentCache(clock)
    client = create_redis_client(url)
    stack.push_async_callback(client.aclose)
    cache = RedisSentCache(client)
    if not await cache.ping():
        log.warning("Redis does not answer; sending goes on and cache writes are counted as failed")
    return cache


def open_provider(settings: Settings, url: str, stack: contextlib.AsyncExitStack) -> SmsProvider:
    """Build the provider client ``PROVIDER_HTTP_CLIENT`` names; ``stack`` closes it."""
    auth_key = settings.sms_provider_key.get_secret_value()
    header = settings.provider_idempotency_header
    if settings.provider_http_client == "aiohttp":
        session = create_aiohttp_session(max_connections=settings.message_max_workers)
        stack.push_async_callback(session.close)
        return AiohttpSmsProvider(session, url=url, auth_key=auth_key, idempotency_header=header)
    client = create_reqwest_client(max_connections=settings.message_max_workers)
    stack.push_async_callback(client.close)
    return ReqwestSmsProvider(client, url=url, auth_key=auth_key, idempotency_header=header)
