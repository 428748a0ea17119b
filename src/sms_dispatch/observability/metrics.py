"""Prometheus metrics of one service instance, in a registry of its own (never the global one).

Three sources feed them:

- the core, as it delivers, through the ``DeliveryObserver`` port (``send_finished``,
  ``batch_finished``): the send and batch histograms and the sends by outcome;
- ``Deliverer.counters``, read at scrape time: retries, rescues, cache-write failures;
- the store, read at scrape time by ``refresh``: messages by status (``count_by_status``),
  the queue's lag (``oldest_due_at``, one due-index probe), the scheduler switch and the live
  instances. A few indexed reads: scraping stays cheap on a table of millions of rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sms_dispatch import __version__
from sms_dispatch.delivery import DeliveryCounters
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.domain import Outcome, Status
from sms_dispatch.logs import get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.ports import Clock, MessageStore

log = get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, served unless the scraper asks for OpenMetrics."""
PREFIX = "sms_dispatch"
REFRESH_TIMEOUT_S = 5.0
"""The longest a scrape waits for the database; past it the last known values are served."""

SEND_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def status_class(http_status: int | None) -> str:
    """Return ``2xx``, ``4xx``, ``5xx``, ... for an HTTP status, or ``none`` without an answer."""
    return "none" if http_status is None else f"{http_status // 100}xx"


class _DeliveryTotals(Collector):
    """Expose ``Deliverer.counters`` as Prometheus counters, read at each scrape."""

    def __init__(self) -> None:
        self.counters: DeliveryCounters | None = None

    def collect(self) -> Iterator[Metric]:
        counters = self.counters or DeliveryCounters()
        for name, documentation, value in (
            ("retries", "Sends that failed and were scheduled to retry later.", counters.retried),
            ("rescues", "Expired leases returned to PENDING or FAILED by this instance.", counters.rescued),
            (
                "cache_write_failures",
                "Sent-message cache entries whose write failed (they wait in a backlog).",
                counters.cache_write_failures,
            ),
        ):
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


class ServiceMetrics:
    """Every metric of one service instance; a ``DeliveryObserver`` for the core."""

    def __init__(self) -> None:
        self._outage = OutageLog("database", "reading metrics", logger=log)
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info(f"{PREFIX}_build", "The running version.", registry=registry).info({"version": __version__})
        self._totals = _DeliveryTotals()
        registry.register(self._totals)
        self.messages = Gauge(f"{PREFIX}_messages", "Live messages by status.", ["status"], registry=registry)
        for status in Status:
            self.messages.labels(status=status.value)
        self.queue_lag = Gauge(
            f"{PREFIX}_queue_lag_seconds",
            "How long the oldest due PENDING message has waited since it became due (0 when none).",
            registry=registry,
        )
        self.scheduler_running = Gauge(
            f"{PREFIX}_scheduler_running", "1 when the fleet-wide scheduler switch is on.", registry=registry
        )
        self.instances = Gauge(
            f"{PREFIX}_instances", "Dispatcher instances with a recent heartbeat.", registry=registry
        )
        self.database_up = Gauge(
            f"{PREFIX}_database_up", "1 when the last scrape could read the database.", registry=registry
        )
        self.sends = Counter(
            f"{PREFIX}_sends",
            "Provider calls by outcome and HTTP status class (none: no answer).",
            ["outcome", "status_class"],
            registry=registry,
        )
        self._send_counters: dict[tuple[Outcome, str], Counter] = {}  # labels() once per pair, not per send
        self.send_duration = Histogram(
            f"{PREFIX}_send_duration_seconds",
            "Time of one provider call.",
            buckets=SEND_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size_messages",
            "Messages claimed by a scheduled batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_duration = Histogram(
            f"{PREFIX}_batch_duration_seconds",
            "Time of a scheduled batch, claim to recorded results.",
            buckets=BATCH_DURATION_BUCKETS_S,
            registry=registry,
        )

    def watch(self, counters: DeliveryCounters) -> None:
        """Read retries, rescues and cache-write failures from ``counters`` at each scrape."""
        self._totals.counters = counters

    def send_finished(self, *, outcome: Outcome, http_status: int | None, duration_s: float) -> None:
        """Count one provider call and observe its time."""
        key = (outcome, status_class(http_status))
        counter = self._send_counters.get(key)
        if counter is None:
            counter = self._send_counters[key] = self.sends.labels(outcome=outcome.value, status_class=key[1])
        counter.inc()
        self.send_duration.observe(duration_s)

    def batch_finished(self, *, size: int, duration_s: float) -> None:
        """Observe one scheduled batch's size and time."""
        self.batch_size.observe(size)
        self.batch_duration.observe(duration_s)

    async def refresh(self, *, store: MessageStore, dispatcher: Dispatcher, clock: Clock) -> None:
        """Read the gauges that live in the database; on failure keep the last values, mark it down."""
        try:
            await asyncio.wait_for(self._read(store, dispatcher, clock), timeout=REFRESH_TIMEOUT_S)
        except Exception as exc:  # a scrape must answer whatever the database does
            self.database_up.set(0)
            self._outage.failed(exc)
        else:
            self.database_up.set(1)
            self._outage.succeeded()

    async def _read(self, store: MessageStore, dispatcher: Dispatcher, clock: Clock) -> None:
        now = clock.now()
        counts = await store.count_by_status()
        oldest_due_at = await store.oldest_due_at(now)
        status = await dispatcher.status()
        for state, count in counts.items():
            self.messages.labels(status=state.value).set(count)
        lag_s = 0.0 if oldest_due_at is None else (now - oldest_due_at).total_seconds()
        self.queue_lag.set(max(lag_s, 0.0))
        self.scheduler_running.set(1 if status.running else 0)
        self.instances.set(len(status.instances))

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """Return the registry and its content type: OpenMetrics if ``accept`` asks, else Prometheus text."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type
