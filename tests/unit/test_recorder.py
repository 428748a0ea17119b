"""The group-commit recorder: each result within its window, one write per group, outages retried.

Time is a fake: the recorder's clock and sleep are injected, and the tests move them by hand,
then let the event loop run what became due.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator

import pytest
import structlog

from sms_dispatch.logs import configure_logging, get_logger
from sms_dispatch.observability.outages import OutageLog
from sms_dispatch.recorder import GroupRecorder


class FakeTime:
    """A monotonic clock and a sleep that move only when ``advance`` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        """Return the fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Return once the fake time has moved ``seconds`` on."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move the time on, wake the sleepers now due, and let the loop run what follows."""
        self.now += seconds
        for due, future in list(self._sleepers):
            if due <= self.now + 1e-9 and not future.done():
                future.set_result(None)
        self._sleepers = [(due, f) for due, f in self._sleepers if not f.done()]
        await settle()


async def settle() -> None:
    """Let every task that can run, run (no time passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


class Writes:
    """A fake ``write``: records each group and the time; fails or blocks when told to."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.groups: list[tuple[float, list[str]]] = []
        self.failures: list[BaseException] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, group: list[str]) -> None:
        """Write ``group`` (or raise the next failure)."""
        if self.failures:
            raise self.failures.pop(0)
        if self.gate is not None:
            await self.gate.wait()
        self.groups.append((round(self.time.now, 6), list(group)))


@pytest.fixture
def time() -> FakeTime:
    """A fake clock at 0."""
    return FakeTime()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Capture the log as JSON lines."""
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    yield stream
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    """Return the captured log lines."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def recorder(time: FakeTime, writes: Writes, **options: float) -> GroupRecorder[str]:
    """A recorder with a 50 ms window on the fake time."""
    settled: list[str] = []
    made: GroupRecorder[str] = GroupRecorder(
        writes,
        max_group=int(options.pop("max_group", 100)),
        retry_for_s=options.pop("retry_for_s", 45.0),
        outage=OutageLog(
            "database", "recording results", logger=get_logger("test"), monotonic=time.monotonic
        ),
        window_s=0.05,
        on_settled=settled.extend,
        monotonic=time.monotonic,
        sleep=time.sleep,
    )
    made.settled = settled  # type: ignore[attr-defined]
    return made


async def test_a_result_is_written_when_its_window_ends(time: FakeTime) -> None:
    """A lone result waits its 50 ms for company, no more, then is written."""
    writes = Writes(time)
    rec = recorder(time, writes)
    rec.add("a")
    await time.advance(0.049)
    assert writes.groups == []
    await time.advance(0.001)
    assert writes.groups == [(0.05, ["a"])]
    assert rec.unsettled == 0


async def test_results_of_one_window_share_one_write(time: FakeTime) -> None:
    """Results arriving within the first one's window go in its write; a later one gets its own."""
    writes = Writes(time)
    rec = recorder(time, writes)
    rec.add("a")
    await time.advance(0.02)
    rec.add("b")
    await time.advance(0.02)
    rec.add("c")
    await time.advance(0.01)
    await time.advance(0.01)
    rec.add("d")
    await time.advance(0.05)
    assert writes.groups == [(0.05, ["a", "b", "c"]), (0.11, ["d"])]


async def test_a_full_group_is_written_at_once(time: FakeTime) -> None:
    """A group that reaches its size does not wait for the window."""
    writes = Writes(time)
    rec = recorder(time, writes, max_group=3)
    for name in "abcd":
        rec.add(name)
    await settle()
    assert writes.groups == [(0.0, ["a", "b", "c"])]
    await time.advance(0.05)
    assert writes.groups[1:] == [(0.05, ["d"])]


async def test_a_slow_write_does_not_hold_back_the_next_window(time: FakeTime) -> None:
    """Results that arrive while a group is being written are written when their own window ends."""
    writes = Writes(time)
    writes.gate = asyncio.Event()  # the first write hangs until the gate opens
    rec = recorder(time, writes)
    rec.add("a")
    await time.advance(0.05)  # "a"'s write starts and hangs
    writes.gate = None
    rec.add("b")
    await time.advance(0.05)
    assert writes.groups == [(0.1, ["b"])], "b waited for a's write"
    assert rec.unsettled == 1


async def test_drain_writes_at_once_and_waits_for_the_write(time: FakeTime) -> None:
    """At a batch's end the last results are written now, not at their window's end."""
    writes = Writes(time)
    rec = recorder(time, writes)
    rec.add("a")
    rec.add("b")
    await asyncio.wait_for(rec.drain(), timeout=5)
    assert writes.groups == [(0.0, ["a", "b"])]
    assert rec.unsettled == 0 and rec.settled == ["a", "b"]  # type: ignore[attr-defined]


async def test_flush_writes_what_waits_now(time: FakeTime) -> None:
    """A flush (claims handed back) writes what waits without waiting for the window."""
    writes = Writes(time)
    rec = recorder(time, writes)
    rec.add("a")
    rec.flush()
    await settle()
    assert writes.groups == [(0.0, ["a"])]


async def test_an_outage_is_retried_and_logged_once_each_way(time: FakeTime, log_stream: io.StringIO) -> None:
    """A write failing while the database is away is retried until it passes: two log lines."""
    writes = Writes(time)
    writes.failures = [ConnectionRefusedError(111, "Connect call failed") for _ in range(3)]
    rec = recorder(time, writes)
    rec.add("a")
    await time.advance(0.05)
    for backoff_s in (0.2, 0.4, 0.8):
        assert writes.groups == []
        await time.advance(backoff_s)
    assert writes.groups == [(1.45, ["a"])]
    events = [(line["event"], line.get("doing")) for line in lines(log_stream)]
    assert events == [
        ("database unavailable", "recording results"),
        ("database available again", "recording results"),
    ]
    assert not any("exception" in line for line in lines(log_stream))
    assert rec.given_up == 0


async def test_a_bug_keeps_its_traceback_and_leaves_the_rows_to_the_rescue(
    time: FakeTime, log_stream: io.StringIO
) -> None:
    """A write failing for another reason is logged with its traceback and not retried."""
    writes = Writes(time)
    writes.failures = [KeyError("claim_token")]
    rec = recorder(time, writes)
    rec.add("a")
    await time.advance(0.05)
    await time.advance(10)
    assert writes.groups == []
    assert (rec.given_up, rec.unsettled, rec.settled) == (1, 0, ["a"])  # type: ignore[attr-defined]
    assert isinstance(rec.error, KeyError)
    [line] = lines(log_stream)
    assert line["level"] == "error" and "KeyError" in str(line["exception"])


async def test_an_outage_past_the_lease_is_given_up(time: FakeTime, log_stream: io.StringIO) -> None:
    """Past ``retry_for_s`` (the lease) the rows are the rescue's: the write stops trying."""
    writes = Writes(time)
    writes.failures = [OSError("unreachable") for _ in range(100)]
    rec = recorder(time, writes, retry_for_s=3.0)
    rec.add("a")
    await time.advance(0.05)
    for _ in range(10):
        await time.advance(1.0)
    assert (rec.given_up, rec.unsettled) == (1, 0)
    assert [line["event"] for line in lines(log_stream)] == [
        "database unavailable",
        "results not recorded within the lease; the rescue returns them",
    ]


def test_a_group_size_below_one_is_refused(time: FakeTime) -> None:
    """A group of 0 could never be written: refused with the value named."""
    with pytest.raises(ValueError, match=r"max_group \(0\)"):
        recorder(time, Writes(time), max_group=0)
