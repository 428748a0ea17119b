"""Crash: ``kill -9`` a worker in the middle of a large batch, start it again, lose nothing.

Run in both sending modes: back-to-back batches (a tiny ``SCHEDULER_INTERVAL``: each batch is
recorded in one finish once its last send ends) and continuous mode (``SCHEDULER_INTERVAL=0``:
the pump records results in groups as they come). A duplicate is a send the provider answered
whose result was not yet recorded when the process died, so never more than the rows the
process held in SENDING; in the first mode that is at most one batch. (The pump records a
group whenever ``MESSAGE_BATCH_SIZE`` results are waiting or 50 ms have passed, but results
keep arriving while a group is written, so its bound is the rate times the time to record.)
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from sms_dispatch.simulator import SimulatorConfig, start_simulator
from tests.e2e.conftest import ServiceProcess
from tests.e2e.lifecycle import (
    assert_keys_match_rows,
    fetch_rows,
    insert_pending,
    migrate,
    service_env,
    status_counts,
    tally,
    wait_for,
)

ROWS = 3000
BATCH = 200
WORKERS = 50


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("interval", "most_duplicates"), [("10ms", BATCH), ("0", None)], ids=["batches", "continuous"]
)
async def test_kill_mid_batch_then_restart_loses_nothing(
    interval: str,
    most_duplicates: int | None,
    pg_url: str,
    redis_url: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    """After kill -9 and a restart every message is SUCCESS; duplicates are at most one batch, same key."""
    async with start_simulator(SimulatorConfig(latency_ms=20)) as simulator:
        env = service_env(
            pg_url,
            simulator.url,
            REDIS_URL=redis_url,
            SCHEDULER_INTERVAL=interval,
            SCHEDULER_BATCH_TIMEOUT="2s",
            MESSAGE_PER_MESSAGE_TIMEOUT="1s",
            MESSAGE_LEASE_MARGIN="500ms",
            MESSAGE_BATCH_SIZE=str(BATCH),
            MESSAGE_MAX_WORKERS=str(WORKERS),
            MESSAGE_RETRY_BASE="100ms",
        )
        migrate(env, tmp_path)
        await insert_pending(pg_url, ROWS)
        first = ServiceProcess(["worker"], env, tmp_path)
        processes.append(first)

        async def a_third_sent_and_mid_batch() -> bool:
            assert first.proc.poll() is None, first.output()
            answered = len(simulator.requests)
            # Some of a batch answered, not all: the kill lands while its results are unrecorded.
            return answered >= ROWS // 3 and answered % BATCH != 0

        await wait_for(a_third_sent_and_mid_batch, 90, "a third of the messages to go out", poll_s=0.005)
        first.proc.kill()
        assert first.terminate() == -9  # reaps the killed process and closes its log
        answered_at_kill = len(simulator.requests)
        conn = await asyncpg.connect(pg_url)
        claimed_at_kill = {
            str(row["id"]) for row in await conn.fetch("SELECT id FROM messages WHERE status = 'SENDING'")
        }
        await conn.close()

        second = ServiceProcess(["worker"], env, tmp_path)
        processes.append(second)

        async def all_sent() -> bool:
            assert second.proc.poll() is None, second.output()
            return (await status_counts(pg_url))["SUCCESS"] == ROWS

        await wait_for(all_sent, 120, "every message to be delivered after the restart")
        assert second.terminate() == 0, second.output()
        requests = simulator.requests

    rows = await fetch_rows(pg_url)
    provider = tally(requests)
    print(
        f"\ncrash ({interval=}): messages={ROWS} answered_at_kill={answered_at_kill} claimed_at_kill={len(claimed_at_kill)}"
        f" requests={provider.requests} duplicates={provider.duplicates}"
        f" attempts_total={sum(r['attempts'] for r in rows)}"
    )
    assert len(rows) == ROWS and all(r["status"] == "SUCCESS" for r in rows), "a message was lost"
    assert claimed_at_kill, "the kill landed between two batches: nothing was tested"
    assert provider.messages == ROWS
    assert provider.duplicates <= len(claimed_at_kill), "more duplicates than rows held at the kill"
    if most_duplicates is not None:
        assert provider.duplicates <= most_duplicates
    assert provider.duplicated_keys <= claimed_at_kill, "a message not in flight at the kill was resent"
    assert_keys_match_rows(requests, rows)
    # Each row in flight at the kill was claimed twice (the lease rescue keeps the attempt); no other.
    assert sum(r["attempts"] for r in rows) == ROWS + len(claimed_at_kill)
    last_accepted = {r.idempotency_key: r.provider_message_id for r in requests if r.status == 202}
    assert all(last_accepted[str(r["id"])] == r["message_id"] for r in rows)
