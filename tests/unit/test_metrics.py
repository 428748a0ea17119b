"""Prometheus metrics: one registry per service, fed by the core and read from the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import prometheus_client
import pytest

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.dispatcher import Dispatcher
from sms_dispatch.domain import NewMessage, Outcome, SendResult, Status
from sms_dispatch.observability.metrics import ServiceMetrics, status_class
from sms_dispatch.ports import InstanceInfo
from tests.conftest import FakeClock
from tests.fakes import RecordingSmsProvider


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    """Return one sample of ``metrics``' registry."""
    return metrics.registry.get_sample_value(name, labels)


def wire(
    clock: FakeClock, provider: RecordingSmsProvider | None = None, store: InMemoryMessageStore | None = None
) -> tuple[ServiceMetrics, Deliverer, Dispatcher, InMemoryMessageStore]:
    """Build metrics fed by a deliverer over an in-memory store, as bootstrap does."""
    metrics = ServiceMetrics()
    store = store or InMemoryMessageStore()
    deliverer = Deliverer(
        store=store,
        provider=provider or RecordingSmsProvider(),
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=10, max_workers=2, retry_base_s=10),
        instance_name="test",
        observer=metrics,
    )
    metrics.watch(deliverer.counters)
    dispatcher = Dispatcher(
        deliverer=deliverer, control=store, clock=clock, interval_s=120, instance_name="test"
    )
    return metrics, deliverer, dispatcher, store


async def add(store: InMemoryMessageStore, clock: FakeClock, n: int) -> None:
    """Create ``n`` PENDING messages one second apart."""
    for i in range(n):
        await store.create(NewMessage("+905551111111", f"m{i}"), now=clock.now())
        clock.advance(1)


def test_each_service_has_its_own_registry() -> None:
    """Two ServiceMetrics live side by side and leave the global registry alone."""
    first, second = ServiceMetrics(), ServiceMetrics()
    first.send_finished(outcome=Outcome.DELIVERED, http_status=202, duration_s=0.01)
    assert value(first, "sms_dispatch_sends_total", outcome="delivered", status_class="2xx") == 1
    assert value(second, "sms_dispatch_sends_total", outcome="delivered", status_class="2xx") is None
    assert prometheus_client.REGISTRY.get_sample_value("sms_dispatch_sends_total") is None


@pytest.mark.parametrize(("status", "label"), [(202, "2xx"), (429, "4xx"), (503, "5xx"), (None, "none")])
def test_status_class(status: int | None, label: str) -> None:
    """An HTTP status becomes its class; no answer is "none"."""
    assert status_class(status) == label


async def test_a_batch_feeds_sends_durations_batches_and_retries(clock: FakeClock) -> None:
    """A batch of three with one 503 counts two delivered 2xx, one retryable 5xx, one retry, one batch."""
    provider = RecordingSmsProvider().then(SendResult(Outcome.RETRYABLE, http_status=503, error="busy"))
    metrics, deliverer, _, store = wire(clock, provider)
    await add(store, clock, 3)
    await deliverer.deliver_batch()
    assert value(metrics, "sms_dispatch_sends_total", outcome="delivered", status_class="2xx") == 2
    assert value(metrics, "sms_dispatch_sends_total", outcome="retryable", status_class="5xx") == 1
    assert value(metrics, "sms_dispatch_send_duration_seconds_count") == 3
    assert value(metrics, "sms_dispatch_batch_size_messages_sum") == 3
    assert value(metrics, "sms_dispatch_batch_duration_seconds_count") == 1
    assert value(metrics, "sms_dispatch_retries_total") == 1
    assert value(metrics, "sms_dispatch_rescues_total") == 0


async def test_an_empty_batch_is_not_observed(clock: FakeClock) -> None:
    """A batch that claims nothing leaves the batch histograms untouched."""
    metrics, deliverer, _, _ = wire(clock)
    await deliverer.deliver_batch()
    assert value(metrics, "sms_dispatch_batch_size_messages_count") == 0


async def test_refresh_reads_counts_lag_switch_and_instances(clock: FakeClock) -> None:
    """After a refresh the gauges show the store: counts by status, lag, the switch, live instances."""
    metrics, deliverer, dispatcher, store = wire(clock)
    await add(store, clock, 3)
    await store.heartbeat(InstanceInfo("test", "host", 1, "0", clock.now(), clock.now()))
    clock.advance(7)
    await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    assert value(metrics, "sms_dispatch_messages", status="PENDING") == 3
    assert value(metrics, "sms_dispatch_messages", status="SUCCESS") == 0
    assert value(metrics, "sms_dispatch_queue_lag_seconds") == 10  # the first was due 10 s ago
    assert value(metrics, "sms_dispatch_scheduler_running") == 1
    assert value(metrics, "sms_dispatch_instances") == 1
    assert value(metrics, "sms_dispatch_database_up") == 1
    await deliverer.deliver_batch()
    await dispatcher.stop()
    await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    assert value(metrics, "sms_dispatch_messages", status="SUCCESS") == 3
    assert value(metrics, "sms_dispatch_queue_lag_seconds") == 0
    assert value(metrics, "sms_dispatch_scheduler_running") == 0


class BrokenStore(InMemoryMessageStore):
    """A store whose database went away after the first reads."""

    broken = False

    async def count_by_status(self) -> Mapping[Status, int]:
        """Fail once broken."""
        if self.broken:
            raise ConnectionError("database is gone")
        return await super().count_by_status()


async def test_refresh_survives_a_database_outage(clock: FakeClock) -> None:
    """When the store fails, a scrape still answers: last values kept, database_up 0."""
    store = BrokenStore()
    metrics, _, dispatcher, _ = wire(clock, store=store)
    await add(store, clock, 2)
    await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    store.broken = True
    await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    assert value(metrics, "sms_dispatch_database_up") == 0
    assert value(metrics, "sms_dispatch_messages", status="PENDING") == 2
    assert b"sms_dispatch_messages" in metrics.render()[0]


async def test_an_outage_seen_by_scrapes_is_two_log_lines(
    clock: FakeClock, json_log: Callable[[], list[dict[str, Any]]]
) -> None:
    """Five scrapes during an outage log one warning; the first scrape after it logs one line back."""
    store = BrokenStore()
    metrics, _, dispatcher, _ = wire(clock, store=store)
    store.broken = True
    for _ in range(5):
        await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    store.broken = False
    await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    await metrics.refresh(store=store, dispatcher=dispatcher, clock=clock)
    lines = [line for line in json_log() if line.get("doing") == "reading metrics"]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("database unavailable", "warning"),
        ("database available again", "info"),
    ]
    assert lines[1]["failures"] == 5


def test_render_speaks_openmetrics_when_asked() -> None:
    """The classic text format by default; OpenMetrics when the scraper's Accept asks for it."""
    metrics = ServiceMetrics()
    assert metrics.render()[1].startswith("text/plain; version=0.0.4")
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
