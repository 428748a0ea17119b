"""The one composition root: Settings in, running services out, closed in reverse order.

Nothing else in the package builds an engine, a client or a task; nothing here runs at
import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.aiohttp_provider import AiohttpSmsProvider, create_aiohttp_session
from sms_dispatch.adapters.database import create_engine, migrate
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
from sms_dispatch.pump import Pump
from sms_dispatch.retention import Pruner, RetentionPolicy
from sms_dispatch.service import MessageService
from sms_dispatch.simulator import start_simulator

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
async def bootstrap(settings: Settings, *, run_dispatcher: bool = True) -> AsyncIterator[Services]:
    """Build and start the services; on exit drain the dispatcher and close everything."""
    clock: Clock = SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings.sqlalchemy_url(), pool_size=settings.db_pool_size)
        stack.push_async_callback(engine.dispose)
        report = await migrate(engine)
        store = SqlMessageStore(engine)
        if settings.uses_embedded_database:
            log.info(
                "using the embedded SQLite database; single instance only",
                path=str(settings.sqlite_path),
            )

        cache = await _open_cache(settings, clock, stack)
        provider_url = settings.sms_provider_url
        if provider_url is None:
            simulator = await stack.enter_async_context(start_simulator())
            provider_url = simulator.url
            log.warning(
                "SMS_PROVIDER_URL is not set: sending to the built-in provider simulator", url=provider_url
            )
        provider = open_provider(settings, provider_url, stack)

        rules = await message_rules(settings, engine)
        messages = MessageService(store=store, cache=cache, clock=clock, rules=rules)
        if settings.uses_embedded_database and report.created_messages_table and settings.seed_on_first_run:
            async for _ in messages.seed(settings.seed_on_first_run):
                pass
            log.info("first run: seeded sample messages", count=settings.seed_on_first_run)

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
            clock=clock,
            operations=OperatorActions(store=store, clock=clock),
            metrics=metrics,
            pruner=pruner,
        )


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
