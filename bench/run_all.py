"""Run every benchmark in one sitting and print the targets each one met or missed.

    .venv/bin/python bench/run_all.py [--quick] [--skip NAME,...]

In order: ``throughput.py`` (drain against the peers, cores, latency-bound, memory on
1,000,000 messages), ``pickup.py`` (insert-to-provider latency, idle CPU), ``listing.py``
(listings on 1,000,000 sent rows), ``pg_cost.py`` (PostgreSQL's CPU per message, and
what the listing indexes, the attempts key and the count triggers add to it), ``redis_cache.py`` (a batch of cache keys: pipeline against
one script call) and ``http_clients.py`` (pyreqwest, aiohttp and httpx). Each writes
its own ``bench/results/<name>.md``; ``--quick`` makes every one a small smoke run (and writes
``bench/results/quick-<name>.md`` instead, leaving the recorded results alone).
``make bench`` runs this after installing the peers (uv group ``bench``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"


def plan(quick: bool) -> list[tuple[str, list[str], Path]]:
    """Return (name, arguments, results file) for every benchmark."""
    prefix = "quick-" if quick else ""
    runs = [
        (
            "throughput",
            ["--memory", "--output", f"{prefix}throughput", "--quick"]
            if quick
            else ["--memory", "--repeat", "3", "--peer-messages", "20000", "--output", "throughput"],
        ),
        ("pickup", ["--output", f"{prefix}pickup", *(["--quick"] if quick else [])]),
        ("listing", ["--quick", "--no-write"] if quick else []),
        ("pg_cost", ["--messages", "3000", "--rounds", "1", "--output", f"{prefix}pg_cost"] if quick else []),
        ("redis_cache", ["--rounds", "5", "--output", f"{prefix}redis_cache"] if quick else []),
        (
            "http_clients",
            ["--requests", "300", "--output", str(RESULTS / "quick-http_clients.md")]
            if quick
            else ["--repeat", "3"],
        ),
    ]
    return [(name, args, RESULTS / f"{prefix}{name}.md") for name, args in runs]


def targets(path: Path) -> list[str]:
    """Return the target lines a results file records."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.startswith(("- met", "- NOT met"))]


def main() -> int:
    """Run the benchmarks one after the other; exit non-zero if any failed its own checks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke runs of every benchmark")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    args = parser.parse_args()
    skipped = set(filter(None, args.skip.split(",")))
    failed = []
    summary: list[str] = []
    for name, extra, path in plan(args.quick):
        if name in skipped or not (BENCH / f"{name}.py").exists():
            continue
        started = time.monotonic()
        print(f"\n=== {name} ===", flush=True)
        code = subprocess.call([sys.executable, str(BENCH / f"{name}.py"), *extra], cwd=BENCH)
        print(f"=== {name}: exit {code} in {time.monotonic() - started:.0f} s ===", flush=True)
        if code != 0:
            failed.append(name)
        summary += [f"{name}:", *(f"  {line}" for line in targets(path))]
    print("\n" + "\n".join(summary))
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
