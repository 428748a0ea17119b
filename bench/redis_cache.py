"""Writing a batch of sent-message keys to Redis: a pipeline of SETs against one script call.

    .venv/bin/python bench/redis_cache.py [--keys 1000] [--rounds 30]

Each round writes ``--keys`` ``sent_messages:<id>`` keys with a TTL, the way a finished batch
does: once as a redis-py pipeline of ``SET key value EX ttl`` (one queued command per key, what
the service did first), once through ``RedisSentCache.remember_sent`` (one Lua script call per
1,000 keys). The rounds alternate, so both run under the same load. Reported: client CPU time
and wall time per key (medians over the rounds); the keys are checked (value and TTL) first.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime

from harness import redis_url
from machine import write_results

from sms_dispatch.adapters.redis_cache import RedisSentCache, create_redis_client
from sms_dispatch.keys import sent_message_key, sent_message_value

TTL_S = 3600


async def pipeline(client: object, sent: dict[str, datetime]) -> None:
    """The per-command pipeline the service used before the script."""
    async with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
        for provider_id, sent_at in sent.items():
            pipe.set(sent_message_key(provider_id), sent_message_value(sent_at), ex=TTL_S)
        await pipe.execute()


async def main_async(args: argparse.Namespace) -> int:
    client = create_redis_client(redis_url())
    cache = RedisSentCache(client)
    now = datetime.now(UTC)
    timings: dict[str, list[tuple[float, float]]] = {"pipeline of SETs": [], "one script call": []}
    try:
        for round_no in range(args.rounds):
            for name in timings:
                sent = {f"bench-{round_no}-{name[0]}-{i}": now for i in range(args.keys)}
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if name == "pipeline of SETs":
                    await pipeline(client, sent)
                else:
                    await cache.remember_sent(sent, ttl_s=TTL_S)
                cpu_us = (time.process_time() - cpu0) / args.keys * 1e6
                wall_us = (time.perf_counter() - wall0) / args.keys * 1e6
                timings[name].append((cpu_us, wall_us))
                last = next(reversed(sent))
                value, ttl = (
                    await client.get(sent_message_key(last)),
                    await client.ttl(sent_message_key(last)),
                )
                if value != sent_message_value(now) or not 0 < ttl <= TTL_S:
                    print(f"WRONG: {name} stored {value!r} with TTL {ttl}", file=sys.stderr)
                    return 1
        await client.flushdb()
    finally:
        await client.aclose()
    body = [
        f"{args.keys:,} keys per batch, {args.rounds} alternating rounds; medians; every batch checked (value, TTL)",
        "",
        "| write | client CPU per key | wall per key |",
        "|---|---|---|",
    ]
    medians = {}
    for name, rows in timings.items():
        cpu, wall = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        medians[name] = cpu
        body.append(f"| {name} | {cpu:.1f} µs | {wall:.1f} µs |")
    ratio = medians["pipeline of SETs"] / medians["one script call"]
    body += ["", f"The script costs the client {ratio:.1f}x less CPU per key."]
    print("\n".join(body))
    command = " ".join(["bench/redis_cache.py", *sys.argv[1:]])
    path = await write_results(args.output, "Redis: writing a batch of sent-message keys", body, command)
    print(f"\nwritten to {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--output", default="redis_cache", help="results file name under bench/results/")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
