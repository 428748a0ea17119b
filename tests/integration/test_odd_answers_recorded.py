"""A provider answer holding a NUL is recorded with the rest of its group, on PostgreSQL and
SQLite, through both HTTP clients. PostgreSQL text cannot hold a NUL: before, the group's one
finish statement failed, its leases ran out and every message in it was sent again."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.clock import SystemClock
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import NewMessage, Status
from sms_dispatch.ports import MessageFilter
from tests.integration.provider_clients import ProviderFactory, RawServer, answer

GROUP = 3


async def deliver_group(engine: AsyncEngine, make_provider: ProviderFactory, url: str) -> SqlMessageStore:
    """Store ``GROUP`` messages and deliver them in one batch to the provider at ``url``."""
    store, clock = SqlMessageStore(engine), SystemClock()
    for i in range(GROUP):
        await store.create(NewMessage(to="+905551111111", content=f"m{i}"), now=clock.now())
    deliverer = Deliverer(
        store=store,
        provider=make_provider(url),
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=GROUP, max_workers=GROUP, retry_base_s=60),
        instance_name="test",
    )
    report = await deliverer.deliver_batch()
    assert (report.claimed, report.lost_race) == (GROUP, 0)
    return store


async def test_an_accepted_answer_whose_id_holds_a_nul_is_delivered(
    engine: AsyncEngine, make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 202 whose messageId is ``m<NUL>1`` (JSON-escaped) is SUCCESS, the id kept with U+FFFD."""
    raw_server.answer = answer("202 Accepted", b'{"messageId":"m\\u00001"}')
    store = await deliver_group(engine, make_provider, raw_server.url)
    sent = (await store.list_sent(limit=GROUP)).items
    assert [m.message_id for m in sent] == ["m\ufffd1"] * GROUP


async def test_an_error_answer_holding_nul_bytes_is_recorded_as_a_retry(
    engine: AsyncEngine, make_provider: ProviderFactory, raw_server: RawServer
) -> None:
    """A 503 whose body holds NUL bytes leaves each row PENDING for a retry, its error and its
    attempt record kept with U+FFFD."""
    raw_server.answer = answer("503 Service Unavailable", b"busy\x00now")
    store = await deliver_group(engine, make_provider, raw_server.url)
    pending = (await store.list_messages(limit=GROUP, where=MessageFilter(status=Status.PENDING))).items
    assert len(pending) == GROUP
    assert {m.last_error for m in pending} == {"provider answered HTTP 503: busy\ufffdnow"}
    [attempt] = await store.history(pending[0].id)
    assert (attempt.http_status, attempt.response_excerpt) == (503, "busy\ufffdnow")
