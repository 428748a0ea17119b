"""An outage is two log lines (gone, back), however many failures it holds."""

from __future__ import annotations

import io
import json

import structlog

from sms_dispatch.logs import configure_logging, get_logger
from sms_dispatch.observability.outages import OutageLog, describe


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_many_failures_then_a_success_log_two_lines() -> None:
    """100 failures log one WARNING without a traceback; the next success logs one INFO with the count."""
    stream = io.StringIO()
    configure_logging(json_lines=True, stream=stream)
    now = [100.0]
    outage = OutageLog("database", "claiming", logger=get_logger("t"), monotonic=lambda: now[0])
    for _ in range(100):
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except ConnectionRefusedError as exc:
            outage.failed(exc)
        now[0] += 0.2
    assert outage.down
    outage.succeeded()
    outage.succeeded()
    lines = _lines(stream)
    structlog.reset_defaults()
    assert [line["event"] for line in lines] == ["database unavailable", "database available again"]
    assert lines[0]["level"] == "warning" and "exception" not in lines[0]
    assert lines[0]["error"] == "ConnectionRefusedError: [Errno 111] Connect call failed"
    assert lines[1]["failures"] == 100 and lines[1]["down_s"] == 20.0
    assert not outage.down and outage.failures == 0


def test_describe_names_the_cause_on_one_line() -> None:
    """A wrapped error is described with its cause, on one line."""
    inner = OSError("Connection refused\nretry later")
    outer = RuntimeError("could not connect")
    outer.__cause__ = inner
    assert describe(outer) == "RuntimeError: could not connect (OSError: Connection refused retry later)"
