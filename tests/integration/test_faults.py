"""Fault injection: the real delivery path on PostgreSQL against the simulator over real HTTP.

Each test sets one of the simulator's fault knobs and checks that the message ends in the
state and with the attempt count the retry rules say, that the provider saw exactly one
request per attempt, each with the message id as its idempotency key, and that nothing is
left in SENDING.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sms_dispatch.bootstrap import Services, bootstrap
from sms_dispatch.config import Settings
from sms_dispatch.domain import Message, Status
from sms_dispatch.simulator import ReceivedRequest, RunningSimulator, SimulatorConfig, start_simulator

TO = "+905551111111"
RETRY_BASE_S = 0.05
TIMEOUT_S = 0.3

Launch = Callable[..., AbstractAsyncContextManager[Services]]


def fault_settings(pg_url: str, redis_url: str, provider_url: str, **overrides: Any) -> Settings:
    """Settings for a quick run: PostgreSQL, Redis, the given provider, short retry delays."""
    values: dict[str, Any] = {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "SMS_PROVIDER_URL": provider_url,
        "SMS_PROVIDER_KEY": "test-key",
        "SCHEDULER_INTERVAL": "0",
        "MESSAGE_BATCH_SIZE": 50,
        "MESSAGE_MAX_WORKERS": 10,
        "MESSAGE_PER_MESSAGE_TIMEOUT": f"{int(TIMEOUT_S * 1000)}ms",
        "MESSAGE_MAX_ATTEMPTS": 3,
        "MESSAGE_RETRY_BASE": f"{int(RETRY_BASE_S * 1000)}ms",
        "MESSAGE_RETRY_MAX_DELAY": "5s",
        "SEED_ON_FIRST_RUN": 0,
        "INSTANCE_NAME": "faults",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """A provider simulator on a real port, answering 202 until told otherwise."""
    async with start_simulator() as running:
        yield running


@pytest.fixture
def launch(pg_url: str, redis_url: str, simulator: RunningSimulator) -> Launch:
    """Open the services on PostgreSQL and Redis against ``simulator`` (dispatcher idle by default)."""

    @asynccontextmanager
    async def opened(*, run_dispatcher: bool = False, **overrides: Any) -> AsyncIterator[Services]:
        settings = fault_settings(pg_url, redis_url, simulator.url, **overrides)
        async with bootstrap(settings, run_dispatcher=run_dispatcher) as services:
            yield services

    return opened


async def attempt(services: Services, message_id: uuid.UUID) -> tuple[Message, datetime, datetime]:
    """Wait until the message is due, run one batch, return the row and the times around the batch."""
    row = await services.store.get(message_id)
    assert row is not None and row.status is Status.PENDING, row
    if row.next_attempt_at is not None:
        wait_s = (row.next_attempt_at - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(wait_s, 0.0) + 0.01)
    before = datetime.now(UTC)
    report = await services.dispatcher.run_once()
    after = datetime.now(UTC)
    assert report.claimed == 1, report
    row = await services.store.get(message_id)
    assert row is not None
    return row, before, after


async def assert_nothing_sending(services: Services) -> None:
    """No message may be left in SENDING once the batches are over."""
    counts = await services.store.count_by_status()
    assert counts[Status.SENDING] == 0, counts


def keys_and_statuses(requests: list[ReceivedRequest]) -> tuple[set[str | None], list[int | None]]:
    """Return the idempotency keys the provider saw and the status of each answer, in order."""
    return {r.idempotency_key for r in requests}, [r.status for r in requests]


def assert_backoff(row: Message, before: datetime, after: datetime, *, attempt_no: int) -> None:
    """The delay set by a failed attempt is full-jitter exponential: within [ceiling / 2, ceiling]."""
    assert row.next_attempt_at is not None
    ceiling_s = min(5.0, RETRY_BASE_S * 2 ** (attempt_no - 1))
    shortest_s = (row.next_attempt_at - after).total_seconds()
    longest_s = (row.next_attempt_at - before).total_seconds()
    assert shortest_s <= ceiling_s and longest_s >= ceiling_s / 2, (shortest_s, longest_s, ceiling_s)


async def test_server_errors_then_success(launch: Launch, simulator: RunningSimulator) -> None:
    """Two 500s are retried with backoff; the third attempt succeeds: SUCCESS with attempts 3."""
    simulator.config = SimulatorConfig(error_rate=1.0, error_status=500)
    async with launch() as services:
        message = await services.messages.create(TO, "flaky provider")
        for n in (1, 2):
            row, before, after = await attempt(services, message.id)
            assert (row.status, row.attempts) == (Status.PENDING, n)
            assert row.last_error is not None and "HTTP 500" in row.last_error
            assert_backoff(row, before, after, attempt_no=n)
        simulator.config = SimulatorConfig()
        row, _, _ = await attempt(services, message.id)
        await assert_nothing_sending(services)
    assert (row.status, row.attempts, row.last_error) == (Status.SUCCESS, 3, None)
    keys, statuses = keys_and_statuses(simulator.requests)
    assert (keys, statuses) == ({str(message.id)}, [500, 500, 202])
    assert row.message_id == simulator.requests[-1].provider_message_id


async def test_rate_limit_honours_retry_after(launch: Launch, simulator: RunningSimulator) -> None:
    """A 429 with Retry-After: 1 sets next_attempt_at one second on; nothing is claimed earlier."""
    simulator.config = SimulatorConfig(error_rate=1.0, error_status=429, retry_after_s=1.0)
    async with launch(MESSAGE_RETRY_MAX_DELAY="1m") as services:
        message = await services.messages.create(TO, "rate limited")
        row, before, after = await attempt(services, message.id)
        assert (row.status, row.attempts) == (Status.PENDING, 1)
        assert row.next_attempt_at is not None
        assert before + timedelta(seconds=1) <= row.next_attempt_at <= after + timedelta(seconds=1)
        assert (await services.dispatcher.run_once()).claimed == 0, "claimed before Retry-After"
        simulator.config = SimulatorConfig()
        row, _, _ = await attempt(services, message.id)
        await assert_nothing_sending(services)
    assert (row.status, row.attempts) == (Status.SUCCESS, 2)
    assert keys_and_statuses(simulator.requests) == ({str(message.id)}, [429, 202])


async def test_retry_after_is_clamped_by_the_max_delay(launch: Launch, simulator: RunningSimulator) -> None:
    """A 429 asking for an hour waits MESSAGE_RETRY_MAX_DELAY (2 s) instead."""
    simulator.config = SimulatorConfig(error_rate=1.0, error_status=429, retry_after_s=3600)
    async with launch(MESSAGE_RETRY_MAX_DELAY="2s") as services:
        message = await services.messages.create(TO, "asked to wait an hour")
        row, before, after = await attempt(services, message.id)
        await assert_nothing_sending(services)
    assert (row.status, row.attempts) == (Status.PENDING, 1)
    assert row.next_attempt_at is not None
    assert before + timedelta(seconds=2) <= row.next_attempt_at <= after + timedelta(seconds=2)


async def test_hangs_are_retried_then_fail_after_max_attempts(
    launch: Launch, simulator: RunningSimulator
) -> None:
    """A provider that never answers in time: each attempt times out; FAILED after 3 with the reason."""
    simulator.config = SimulatorConfig(hang_rate=1.0, hang_s=10.0)
    async with launch() as services:
        message = await services.messages.create(TO, "into the void")
        for n in (1, 2):
            row, _, _ = await attempt(services, message.id)
            assert (row.status, row.attempts) == (Status.PENDING, n)
            assert row.last_error == f"timed out after {TIMEOUT_S}s"
        row, _, _ = await attempt(services, message.id)
        assert (await services.dispatcher.run_once()).claimed == 0, "a FAILED message was claimed"
        await assert_nothing_sending(services)
    assert (row.status, row.attempts) == (Status.FAILED, 3)
    assert row.last_error == f"gave up after 3 attempts: timed out after {TIMEOUT_S}s"
    assert keys_and_statuses(simulator.requests) == ({str(message.id)}, [None, None, None])
    assert [r.fate for r in simulator.requests] == ["hang"] * 3


async def test_connection_resets_are_retried(launch: Launch, simulator: RunningSimulator) -> None:
    """Two dropped connections are retried; the third attempt succeeds with attempts 3."""
    simulator.config = SimulatorConfig(reset_rate=1.0)
    async with launch() as services:
        message = await services.messages.create(TO, "bad line")
        for n in (1, 2):
            row, _, _ = await attempt(services, message.id)
            assert (row.status, row.attempts) == (Status.PENDING, n)
            assert row.last_error is not None and row.last_error.startswith("connection failed")
        simulator.config = SimulatorConfig()
        row, _, _ = await attempt(services, message.id)
        await assert_nothing_sending(services)
    assert (row.status, row.attempts) == (Status.SUCCESS, 3)
    assert [r.fate for r in simulator.requests] == ["reset", "reset", "accepted"]
    assert {r.idempotency_key for r in simulator.requests} == {str(message.id)}


async def test_forbidden_fails_at_once(launch: Launch, simulator: RunningSimulator) -> None:
    """A 403 (wrong auth key) is permanent: FAILED after one attempt, never sent again."""
    simulator.config = SimulatorConfig(auth_key="the-right-key")
    async with launch() as services:
        message = await services.messages.create(TO, "wrong key")
        row, _, _ = await attempt(services, message.id)
        assert (await services.dispatcher.run_once()).claimed == 0
        await assert_nothing_sending(services)
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert row.last_error is not None and "HTTP 403" in row.last_error
    assert row.raw_response is not None and "Forbidden" in row.raw_response
    assert keys_and_statuses(simulator.requests) == ({str(message.id)}, [403])


async def test_accepted_with_a_broken_body_fails_and_keeps_the_answer(
    launch: Launch, simulator: RunningSimulator
) -> None:
    """A 202 without a readable messageId may have been sent: FAILED at once, raw answer kept, no retry."""
    simulator.config = SimulatorConfig(broken_body_rate=1.0)
    async with launch() as services:
        message = await services.messages.create(TO, "lost receipt")
        row, _, _ = await attempt(services, message.id)
        assert (await services.dispatcher.run_once()).claimed == 0
        await assert_nothing_sending(services)
    assert (row.status, row.attempts, row.message_id) == (Status.FAILED, 1, None)
    assert row.raw_response == "<html>Accepted"
    assert row.last_error is not None and "no messageId" in row.last_error
    assert keys_and_statuses(simulator.requests) == ({str(message.id)}, [202])


async def test_slow_answers_within_the_timeout_succeed(launch: Launch, simulator: RunningSimulator) -> None:
    """Answers that take 1 s under a 3 s timeout are delivered at the first attempt."""
    simulator.config = SimulatorConfig(latency_ms=1000)
    async with launch(MESSAGE_PER_MESSAGE_TIMEOUT="3s") as services:
        messages = [await services.messages.create(TO, f"slow {i}") for i in range(5)]
        report = await services.dispatcher.run_once()
        rows = [await services.store.get(m.id) for m in messages]
        await assert_nothing_sending(services)
    assert (report.claimed, report.delivered) == (5, 5)
    assert all(r is not None and (r.status, r.attempts) == (Status.SUCCESS, 1) for r in rows)
    assert sorted(r.idempotency_key or "" for r in simulator.requests) == sorted(str(m.id) for m in messages)


async def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Poll the async ``check`` until it returns True, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def batches_running(services: Services) -> AsyncIterator[None]:
    """Run a batch every 20 ms in the background (continuous mode without its idle poll)."""

    async def loop() -> None:
        while True:
            await services.dispatcher.run_once()
            await asyncio.sleep(0.02)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def attempts_by_key(requests: list[ReceivedRequest]) -> dict[str, list[datetime]]:
    """Return when the provider received each attempt, by idempotency key."""
    by_key: dict[str, list[datetime]] = {}
    for r in requests:
        by_key.setdefault(r.idempotency_key or "", []).append(r.received_at)
    return by_key


@pytest.mark.timeout(90)
async def test_long_outage_backs_off_and_loses_nothing(launch: Launch, simulator: RunningSimulator) -> None:
    """Answering 503 for a long time: messages back off, none fails early, all go out once it recovers."""
    simulator.config = SimulatorConfig(error_rate=1.0, error_status=503)
    base_s, max_delay_s, max_attempts, count = 0.1, 0.8, 8, 20
    async with launch(
        MESSAGE_RETRY_BASE=f"{int(base_s * 1000)}ms",
        MESSAGE_RETRY_MAX_DELAY=f"{int(max_delay_s * 1000)}ms",
        MESSAGE_MAX_ATTEMPTS=max_attempts,
    ) as services:
        ids = {str((await services.messages.create(TO, f"outage {i}")).id) for i in range(count)}

        async def every_message_tried_five_times() -> bool:
            counts = await services.store.count_by_status()
            assert counts[Status.FAILED] == 0, "a message failed before its attempts were used"
            assert sum(counts.values()) == count, counts
            per_key = attempts_by_key(simulator.requests)
            return set(per_key) == ids and min(len(v) for v in per_key.values()) >= 5

        async def all_sent() -> bool:
            return (await services.store.count_by_status())[Status.SUCCESS] == count

        async with batches_running(services):
            await wait_for(every_message_tried_five_times, 60, "five attempts of every message")
            simulator.config = SimulatorConfig()
            await wait_for(all_sent, 30, "every message to be delivered")
        rows = [await services.store.get(uuid.UUID(i)) for i in ids]
        await assert_nothing_sending(services)
    per_key = attempts_by_key(simulator.requests)
    for row in rows:
        assert row is not None
        times = per_key[str(row.id)]
        assert row.attempts == len(times) <= max_attempts
        for n, (earlier, later) in enumerate(itertools.pairwise(times), start=1):
            ceiling_s = min(max_delay_s, base_s * 2 ** (n - 1))
            assert (later - earlier).total_seconds() >= ceiling_s / 2, f"attempt {n + 1} came too soon"


@pytest.mark.timeout(90)
async def test_provider_down_fails_only_after_every_attempt(pg_url: str, redis_url: str) -> None:
    """With nothing listening at the provider's address, every message FAILS with exactly max attempts."""
    async with start_simulator() as gone:  # take a port, then free it: nothing listens there after
        dead_url = gone.url
    settings = fault_settings(pg_url, redis_url, dead_url, MESSAGE_MAX_ATTEMPTS=4)
    async with bootstrap(settings) as services:  # the real scheduler loop, continuous mode
        ids = [(await services.messages.create(TO, f"nowhere {i}")).id for i in range(10)]
        await services.dispatcher.start()  # wakes the loop now rather than after its idle poll

        async def all_failed() -> bool:
            rows = [await services.store.get(i) for i in ids]
            early = [r for r in rows if r is not None and r.status is Status.FAILED and r.attempts < 4]
            assert not early, f"failed before every attempt was used: {early}"
            return all(r is not None and r.status is Status.FAILED for r in rows)

        await wait_for(all_failed, 60, "every message to fail")
        rows = [await services.store.get(i) for i in ids]
        await assert_nothing_sending(services)
    for row in rows:
        assert row is not None and row.attempts == 4
        assert row.last_error is not None
        assert row.last_error.startswith("gave up after 4 attempts: connection failed"), row.last_error
