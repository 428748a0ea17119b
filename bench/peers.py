"""The contenders sms-dispatch is measured against, each doing the same job per message.

    python bench/peers.py {ceiling,ceiling-pyreqwest,go-loop,go-loop-pyreqwest,pgqueuer,procrastinate}
                          --db URL --sim URL --redis URL [--workers 64] [--batch 1000]

For every PENDING row of the service's ``messages`` table: POST ``{"to", "content"}`` to the
provider (auth key and idempotency key headers, as the service sends; the answer must be a 202
with a ``messageId``), record the provider's ``messageId`` and the send time in the row (status
SUCCESS), and set Redis ``sent_messages:<messageId>`` with a TTL. Each prints ``ready`` once set
up (peers also enqueue their jobs then, outside the measurement), starts on a ``go`` line on
stdin and exits when the queue is empty.

The provider call is made with aiohttp unless the name ends in ``-pyreqwest``: those run the
same loop with pyreqwest, the service's own default client (``PROVIDER_HTTP_CLIENT``), with the
same request and the same checks, so a comparison with the service is not flattered or
penalised by the HTTP client alone.

- ``ceiling``: the raw loop with no service around it: one claim of ``--batch`` rows, POSTs with
  ``--workers`` in flight, one bulk ``UPDATE ... FROM unnest``, one Redis script call setting
  every key of the batch (as the service does); repeat.
- ``ceiling-pyreqwest``: the same loop, provider calls with pyreqwest.
- ``go-loop``: the Go service's algorithm: select a batch, then for each row (``--workers``
  stride workers) send, one UPDATE, one Redis SET; wait for the batch; repeat.
- ``go-loop-pyreqwest``: the same algorithm, provider calls with pyreqwest.
- ``pgqueuer``: one PgQueuer job per message (payload: the message id), its QueueManager in
  drain mode, as its README shows (asyncpg driver, one entrypoint).
- ``procrastinate``: one procrastinate task per message, deferred in one batch, a worker with
  ``--workers`` concurrency that exits when the queue is empty, as its quickstart shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

import aiohttp
import asyncpg
import redis.asyncio as aioredis
import uvloop
from pyreqwest.client import ClientBuilder

HttpClient = Literal["aiohttp", "pyreqwest"]

AUTH_KEY = "bench-auth-key"
TTL_S = 86400
CLAIM = """
UPDATE messages SET status = 'SENDING', attempts = attempts + 1, updated_at = now()
WHERE id = ANY(ARRAY(
    SELECT id FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING id, "to", content
"""
FINISH_BULK = """
UPDATE messages SET status = 'SUCCESS', message_id = v.message_id, sent_at = v.sent_at, updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, message_id, sent_at)
WHERE messages.id = v.id
"""
SELECT_BATCH = """
SELECT id, "to", content FROM messages WHERE status = 'PENDING' AND deleted_at IS NULL
ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED
"""
SELECT_ONE = 'SELECT id, "to", content FROM messages WHERE id = $1'
FINISH_ONE = """
UPDATE messages SET status = 'SUCCESS', message_id = $2, sent_at = $3, updated_at = now(),
attempts = attempts + 1 WHERE id = $1
"""


SET_ALL = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""


class Job:
    """What every contender needs: the provider client, the Redis client, the provider URL.

    ``client`` picks the HTTP client for the provider call: an aiohttp session or a pyreqwest
    client, each pooled to ``workers`` connections; both send the same request and check the
    answer the same way.
    """

    def __init__(self, sim_url: str, redis_url: str, workers: int, client: HttpClient = "aiohttp") -> None:
        self.redis = aioredis.from_url(redis_url, decode_responses=True)
        self.url = sim_url
        self.headers = {"Content-Type": "application/json", "x-ins-auth-key": AUTH_KEY}
        self.post: Callable[[uuid.UUID, str, str], Awaitable[tuple[str, datetime]]]
        if client == "aiohttp":
            connector = aiohttp.TCPConnector(limit=workers, limit_per_host=0, keepalive_timeout=30)
            self.http = aiohttp.ClientSession(connector=connector)
            self.post = self.post_aiohttp
            self.close_http = self.http.close
        else:
            # The aiohttp session keeps aiohttp's default total timeout (5 minutes): the same here.
            self.reqwest = (
                ClientBuilder()
                .max_connections(workers)
                .error_for_status(False)
                .no_proxy()
                .timeout(timedelta(minutes=5))
                .build()
            )
            self.post = self.post_reqwest
            self.close_http = self.reqwest.close

    # The two posts are written out alike rather than sharing helpers, so the aiohttp one is
    # exactly the loop it was and neither pays for an extra call the other does not.
    async def post_aiohttp(self, message_id: uuid.UUID, to: str, content: str) -> tuple[str, datetime]:
        """POST one message with aiohttp; return the provider's messageId and the send time."""
        body = json.dumps({"to": to, "content": content}, ensure_ascii=False)
        headers = {**self.headers, "Idempotency-Key": str(message_id)}
        async with self.http.post(self.url, data=body, headers=headers) as answer:
            payload = json.loads(await answer.read())
            if answer.status != 202 or not payload.get("messageId"):
                raise RuntimeError(f"provider answered {answer.status}: {payload}")
        return payload["messageId"], datetime.now(UTC)

    async def post_reqwest(self, message_id: uuid.UUID, to: str, content: str) -> tuple[str, datetime]:
        """POST one message with pyreqwest; return the provider's messageId and the send time."""
        body = json.dumps({"to": to, "content": content}, ensure_ascii=False).encode()
        headers = {**self.headers, "Idempotency-Key": str(message_id)}
        request = self.reqwest.post(self.url).headers(headers).body_bytes(body).build()
        answer = await request.send()
        payload = json.loads(bytes(await answer.bytes()))
        if answer.status != 202 or not payload.get("messageId"):
            raise RuntimeError(f"provider answered {answer.status}: {payload}")
        return payload["messageId"], datetime.now(UTC)

    async def close(self) -> None:
        """Close the HTTP client and the Redis client."""
        await self.close_http()
        await self.redis.aclose()


def cache_value(sent_at: datetime) -> str:
    """The cached send time, as the service writes it."""
    return sent_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def wait_for_go() -> None:
    """Say ready and wait for the ``go`` line."""
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def wait_to_close() -> None:
    """Say done and stay open (connections too) until the harness has read its CPU figures."""
    print("done", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def ceiling(args: argparse.Namespace, client: HttpClient = "aiohttp") -> None:
    """Claim, POST, one bulk UPDATE, one Redis pipeline per batch: the loop with nothing around it."""
    pool = await asyncpg.create_pool(args.db, min_size=2, max_size=2)
    job = Job(args.sim, args.redis, args.workers, client)
    set_all = job.redis.register_script(SET_ALL)
    await wait_for_go()

    async def worker(queue: list[asyncpg.Record], results: list[tuple[uuid.UUID, str, datetime]]) -> None:
        while queue:
            row = queue.pop()
            provider_id, sent_at = await job.post(row["id"], row["to"], row["content"])
            results.append((row["id"], provider_id, sent_at))

    while rows := await pool.fetch(CLAIM, args.batch):
        results: list[tuple[uuid.UUID, str, datetime]] = []
        queue = list(reversed(rows))
        await asyncio.gather(*(worker(queue, results) for _ in range(min(args.workers, len(rows)))))
        await pool.execute(FINISH_BULK, *map(list, zip(*results, strict=True)))
        # The same one-script write as the service (``RedisSentCache``): the ceiling gets every
        # technique the service uses, so the ratio shows the service's overhead, not a trick.
        keys = [f"sent_messages:{provider_id}" for _, provider_id, _ in results]
        await set_all(keys=keys, args=[TTL_S, *(cache_value(sent_at) for _, _, sent_at in results)])
    await wait_to_close()
    await job.close()
    await pool.close()


async def go_loop(args: argparse.Namespace, client: HttpClient = "aiohttp") -> None:
    """The Go service's algorithm: a batch select, then per row a send, an UPDATE and a SET."""
    pool = await asyncpg.create_pool(args.db, min_size=10, max_size=10)  # the Go service's pool
    job = Job(args.sim, args.redis, args.workers, client)
    await wait_for_go()
    while rows := await pool.fetch(SELECT_BATCH, args.batch):
        workers = min(args.workers, len(rows))

        async def worker(first: int, stride: int = workers) -> None:
            for row in rows[first::stride]:
                provider_id, sent_at = await job.post(row["id"], row["to"], row["content"])
                await pool.execute(FINISH_ONE, row["id"], provider_id, sent_at)
                await job.redis.set(f"sent_messages:{provider_id}", cache_value(sent_at), ex=TTL_S)

        await asyncio.gather(*(worker(i) for i in range(workers)))
    await wait_to_close()
    await job.close()
    await pool.close()


async def one_job(pool: asyncpg.Pool, job: Job, message_id: uuid.UUID) -> None:
    """What a queue's job does for one message: read it, send it, record it, cache it."""
    row = await pool.fetchrow(SELECT_ONE, message_id)
    provider_id, sent_at = await job.post(row["id"], row["to"], row["content"])
    await pool.execute(FINISH_ONE, message_id, provider_id, sent_at)
    await job.redis.set(f"sent_messages:{provider_id}", cache_value(sent_at), ex=TTL_S)


async def pending_ids(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """Return every PENDING message id, oldest first (the jobs to enqueue)."""
    rows = await pool.fetch("SELECT id FROM messages WHERE status = 'PENDING' ORDER BY next_attempt_at, id")
    return [row["id"] for row in rows]


async def pgqueuer(args: argparse.Namespace) -> None:
    """One PgQueuer job per message, drained by its QueueManager."""
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job as PgqJob
    from pgqueuer.queries import Queries

    pool = await asyncpg.create_pool(args.db, min_size=10, max_size=10)
    job = Job(args.sim, args.redis, args.workers)
    queries = Queries(AsyncpgDriver(await asyncpg.connect(args.db)))
    await queries.install()
    ids = await pending_ids(pool)
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        await queries.enqueue(["send_sms"] * len(chunk), [i.bytes for i in chunk], [0] * len(chunk))
    pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(args.db)))

    @pgq.entrypoint("send_sms")
    async def send_sms(pgq_job: PgqJob) -> None:
        assert pgq_job.payload is not None
        await one_job(pool, job, uuid.UUID(bytes=pgq_job.payload))

    await wait_for_go()
    batch = max(10, args.workers // 2)  # max_concurrent_tasks must be at least twice the batch
    await pgq.qm.run(mode=QueueExecutionMode.drain, batch_size=batch, max_concurrent_tasks=args.workers)
    await wait_to_close()
    await job.close()
    await pool.close()


async def procrastinate(args: argparse.Namespace) -> None:
    """One procrastinate task per message, deferred in one batch, run by its worker."""
    import procrastinate as pc

    pool = await asyncpg.create_pool(args.db, min_size=10, max_size=10)
    job = Job(args.sim, args.redis, args.workers)
    app = pc.App(connector=pc.PsycopgConnector(conninfo=args.db, max_size=20))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        @app.task(queue="sms", name="send_sms")
        async def send_sms(message_id: str) -> None:
            await one_job(pool, job, uuid.UUID(message_id))

        ids = await pending_ids(pool)
        for start in range(0, len(ids), 10_000):
            await send_sms.batch_defer_async(*({"message_id": str(i)} for i in ids[start : start + 10_000]))
        await wait_for_go()
        await app.run_worker_async(
            queues=["sms"], concurrency=args.workers, wait=False, install_signal_handlers=False
        )
        await wait_to_close()
    await job.close()
    await pool.close()


CONTENDERS: dict[str, Callable[[argparse.Namespace], Awaitable[None]]] = {
    "ceiling": ceiling,
    "ceiling-pyreqwest": partial(ceiling, client="pyreqwest"),
    "go-loop": go_loop,
    "go-loop-pyreqwest": partial(go_loop, client="pyreqwest"),
    "pgqueuer": pgqueuer,
    "procrastinate": procrastinate,
}


def main(argv: list[str] | None = None) -> None:
    """Run one contender until its queue is empty."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--db", required=True)
    parser.add_argument("--sim", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    args: Any = parser.parse_args(argv)
    uvloop.run(CONTENDERS[args.contender](args))


if __name__ == "__main__":
    main()
