"""What PostgreSQL spends per message on the service's schema, and what each part of it costs.

    .venv/bin/python bench/pg_cost.py [--messages 30000] [--rounds 3] [--output pg_cost]

Every variant drains the same ``--messages`` PENDING rows through the real ``SqlMessageStore``:
claim 1,000, finish them all as SUCCESS with their attempt records, until none is left; no
HTTP, no Redis, so the figure is the database's own work. Reported: CPU seconds of every
PostgreSQL server process (backends, WAL writer, autovacuum, ended ones too) per message, against the schema
at head. The variants take one thing away from (or give one back to) a fresh database at head:

- ``before 0009``: the provider-id and idempotency-key indexes over every row, NULL included;
- ``no listing indexes``: the four indexes the listing filters need (``created``,
  ``status_created``, ``to_created``, ``sent_to``);
- ``no attempts foreign key``: ``message_attempts.message_id`` unchecked (each attempt row
  otherwise looks its message up);
- ``no count triggers``: the statement triggers that keep the listing counts.

Rounds alternate the variants, so load from elsewhere hits each alike; each drain is checked
(every row SUCCESS under its provider id, one attempt each) before its figure counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from harness import fresh_database, stop_cleanly_on_sigterm
from machine import write_results
from readings import postgres_cpu, postgres_cpu_s
from sqlalchemy import make_url

from sms_dispatch.adapters.database import create_engine
from sms_dispatch.adapters.sql_store import SqlMessageStore
from sms_dispatch.adapters.tables import CREATED_INDEX, SENT_TO_INDEX, STATUS_CREATED_INDEX, TO_CREATED_INDEX
from sms_dispatch.domain import AttemptOutcome, Outcome, SendResult
from sms_dispatch.outcomes import DeliveryPolicy, attempt_record, transition_for

BATCH = 1000
HEAD = "schema at head"
_DROP_COUNT_TRIGGERS = """
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT tgname FROM pg_trigger
           WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal AND tgname LIKE '%count%'
  LOOP EXECUTE format('DROP TRIGGER %I ON messages', t.tgname); END LOOP;
END $$"""
VARIANTS: dict[str, list[str]] = {
    HEAD: [],
    "before 0009": [
        "DROP INDEX ix_messages_message_id",
        "CREATE INDEX ix_messages_message_id ON messages (message_id)",
        "DROP INDEX ux_messages_idempotency_key",
        "CREATE UNIQUE INDEX ux_messages_idempotency_key ON messages (idempotency_key)",
    ],
    "no listing indexes": [
        f"DROP INDEX {name}"
        for name in (CREATED_INDEX, STATUS_CREATED_INDEX, TO_CREATED_INDEX, SENT_TO_INDEX)
    ],
    "no attempts foreign key": [
        "ALTER TABLE message_attempts DROP CONSTRAINT message_attempts_message_id_fkey"
    ],
    "no count triggers": [_DROP_COUNT_TRIGGERS],
}


async def drain(variant: str, messages: int) -> tuple[float, float, list[str]]:
    """Drain ``messages`` rows on a fresh database changed by ``variant``.

    Return PostgreSQL CPU µs and client wall µs per message, and what the check found wrong.
    """
    async with fresh_database(messages) as url:
        connection = await asyncpg.connect(url)
        try:
            for statement in VARIANTS[variant]:
                await connection.execute(statement)
        finally:
            await connection.close()
        engine = create_engine(make_url(url).set(drivername="postgresql+asyncpg"), pool_size=1)
        store, policy = SqlMessageStore(engine), DeliveryPolicy(batch_size=BATCH, max_workers=BATCH)
        try:
            db0, started, done = postgres_cpu(), time.perf_counter(), 0
            while True:
                now, token = datetime.now(UTC), str(uuid.uuid4())
                claimed = await store.claim_due(
                    limit=BATCH, now=now, lease_s=60, claim_token=token, claimed_by="bench"
                )
                if not claimed:
                    break
                transitions, records = [], []
                for message in claimed:
                    answer = f'{{"message":"Accepted","messageId":"{message.id}"}}'
                    result = SendResult(Outcome.DELIVERED, str(message.id), 202, answer)
                    transitions.append(transition_for(message, token, result, policy, now=now))
                    records.append(
                        attempt_record(
                            message, now, 1.0, AttemptOutcome.DELIVERED, result, reason=None, instance="bench"
                        )
                    )
                await store.finish(transitions, now=now, attempts=records)
                done += len(claimed)
            wall_s, db_s = time.perf_counter() - started, postgres_cpu_s(db0, postgres_cpu())
        finally:
            await engine.dispose()
        return db_s / messages * 1e6, wall_s / messages * 1e6, await check(url, messages, done)


async def check(url: str, messages: int, done: int) -> list[str]:
    """Every row SUCCESS under its own id as the provider id, one applied attempt each."""
    connection = await asyncpg.connect(url)
    try:
        sent = await connection.fetchval(
            "SELECT count(*) FROM messages WHERE status = 'SUCCESS' AND message_id = id::text"
        )
        attempts = await connection.fetchrow(
            "SELECT count(*) AS records, count(DISTINCT message_id) AS messages"
            " FROM message_attempts WHERE applied"
        )
    finally:
        await connection.close()
    found = (
        ("claimed", done),
        ("sent", sent),
        ("applied attempt records", attempts["records"]),
        ("messages with one", attempts["messages"]),
    )
    return [f"{name} {got:,} of {messages:,}" for name, got in found if got != messages]


async def main_async(args: argparse.Namespace) -> int:
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    print(f"pg_cost: {args.messages:,} messages per drain, {args.rounds} round(s)", flush=True)
    for _ in range(args.rounds):
        for name in VARIANTS:
            db_us, wall_us, wrong = await drain(name, args.messages)
            status = "ok" if not wrong else "WRONG: " + "; ".join(wrong)
            print(
                f"  {name:26} PostgreSQL {db_us:6.1f} µs/msg  wall {wall_us:6.1f} µs/msg  {status}",
                flush=True,
            )
            if wrong:
                return 1
            figures[name].append((db_us, wall_us))
    head = statistics.median(db for db, _ in figures[HEAD])
    body = [
        f"Median of {args.rounds} interleaved round(s), {args.messages:,} messages per drain, claimed"
        f" and finished {BATCH:,} at a time through `SqlMessageStore`; every drain checked.",
        "",
        "| schema | PostgreSQL CPU µs per message | against head | client wall µs per message |",
        "|---|---|---|---|",
    ]
    for name, runs in figures.items():
        db_us = statistics.median(db for db, _ in runs)
        wall_us = statistics.median(wall for _, wall in runs)
        versus = "—" if name == HEAD else f"{db_us - head:+.1f} µs ({db_us / head - 1:+.0%})"
        body.append(f"| {name} | {db_us:.1f} | {versus} | {wall_us:.1f} |")
    print("\n".join(body))
    if args.output:
        command = f"bench/pg_cost.py --messages {args.messages} --rounds {args.rounds}"
        path = await write_results(args.output, "PostgreSQL cost per message, part by part", body, command)
        print(f"\nwritten to {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="pg_cost", help="results file name ('' writes none)")
    stop_cleanly_on_sigterm()
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
