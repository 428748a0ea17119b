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
- ``no count triggers``: the statement triggers that keep the listing counts;
- ``before 0011``: the row triggers of 0005 and 0006 (the wake-up on a row back to PENDING,
  the ``validated`` reset on a hand edit) instead of 0011's one statement trigger.

Rounds alternate the variants, so load from elsewhere hits each alike; each drain is checked
(every row SUCCESS under its provider id, one attempt each) before its figure counts. Besides
every PostgreSQL process, the CPU of the one backend serving the drain's connection is read on
its own: other work on a shared server moves the first figure by several µs, not the second.
``--variants`` runs only the named ones (the head always runs).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import asyncpg
import psutil
from harness import fresh_database, stop_cleanly_on_sigterm
from machine import write_results
from readings import postgres_cpu, postgres_cpu_s
from sqlalchemy import make_url, text

from sms_dispatch.adapters.database import SCRIPT_LOCATION, create_engine
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


def _migration(name: str) -> ModuleType:
    """Load a migration of the package (its file name is no module name) for its statements."""
    package = importlib.util.find_spec(SCRIPT_LOCATION.split(":")[0])
    assert package is not None and package.submodule_search_locations is not None
    folder = Path(package.submodule_search_locations[0], "migrations", "versions")
    spec = importlib.util.spec_from_file_location(f"migration_{name}", folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    "before 0011": list(_migration("0011_unpinned_columns").BEFORE),
}


@dataclass(frozen=True)
class Drain:
    """What one drain cost, per message, and what its check found wrong."""

    postgres_us: float
    """CPU of every PostgreSQL process (backends, WAL writer, autovacuum, ended ones too)."""
    backend_us: float
    """CPU of the one backend that served the drain's connection."""
    wall_us: float
    wrong: list[str]


async def drain(variant: str, messages: int) -> Drain:
    """Drain ``messages`` rows on a fresh database changed by ``variant``."""
    async with fresh_database(messages) as url:
        connection = await asyncpg.connect(url)
        try:
            for statement in VARIANTS[variant]:
                await connection.execute(statement)
        finally:
            await connection.close()
        # One pooled connection: every claim and finish runs on the same backend.
        engine = create_engine(make_url(url).set(drivername="postgresql+asyncpg"), pool_size=1)
        store, policy = SqlMessageStore(engine), DeliveryPolicy(batch_size=BATCH, max_workers=BATCH)
        try:
            async with engine.connect() as pooled:
                backend = psutil.Process((await pooled.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            db0, backend0, started, done = postgres_cpu(), _cpu_s(backend), time.perf_counter(), 0
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
            backend_s = _cpu_s(backend) - backend0
        finally:
            await engine.dispose()
        wrong = await check(url, messages, done)
        return Drain(db_s / messages * 1e6, backend_s / messages * 1e6, wall_s / messages * 1e6, wrong)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


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
    chosen = [HEAD, *(name for name in VARIANTS if name != HEAD and name in args.variants)]
    figures: dict[str, list[Drain]] = {name: [] for name in chosen}
    print(f"pg_cost: {args.messages:,} messages per drain, {args.rounds} round(s)", flush=True)
    for _ in range(args.rounds):
        for name in chosen:
            found = await drain(name, args.messages)
            status = "ok" if not found.wrong else "WRONG: " + "; ".join(found.wrong)
            print(
                f"  {name:26} PostgreSQL {found.postgres_us:6.1f} µs/msg"
                f"  its backend {found.backend_us:6.1f} µs/msg  wall {found.wall_us:6.1f} µs/msg  {status}",
                flush=True,
            )
            if found.wrong:
                return 1
            figures[name].append(found)
    head = {part: statistics.median(getattr(d, part) for d in figures[HEAD]) for part in _PARTS}
    body = [
        f"Median of {args.rounds} interleaved round(s), {args.messages:,} messages per drain, claimed"
        f" and finished {BATCH:,} at a time through `SqlMessageStore`; every drain checked.",
        "",
        "| schema | PostgreSQL CPU µs per message | against head | the drain's backend µs per message"
        " | against head | client wall µs per message |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in figures.items():
        cells = []
        for part in _PARTS:
            value = statistics.median(getattr(d, part) for d in runs)
            cells.append(f"{value:.1f}")
            if part != "wall_us":
                against = value - head[part]
                cells.append("—" if name == HEAD else f"{against:+.1f} µs ({value / head[part] - 1:+.0%})")
        body.append(f"| {name} | {' | '.join(cells)} |")
    print("\n".join(body))
    if args.output:
        command = f"bench/pg_cost.py --messages {args.messages} --rounds {args.rounds}"
        if set(chosen) != set(VARIANTS):
            command += " --variants " + " ".join(f"'{name}'" for name in chosen if name != HEAD)
        path = await write_results(args.output, "PostgreSQL cost per message, part by part", body, command)
        print(f"\nwritten to {path}")
    return 0


_PARTS = ("postgres_us", "backend_us", "wall_us")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default="pg_cost", help="results file name ('' writes none)")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        metavar="NAME",
        help="the variants to run besides the head",
    )
    stop_cleanly_on_sigterm()
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
