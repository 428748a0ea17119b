"""The API's outage log: a line when a dependency goes, a line when a request shows it is back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sms_dispatch.api.app import openapi_document
from sms_dispatch.api.outages import ApiOutages, database_operations
from sms_dispatch.errors import DependencyUnavailable

Lines = Callable[[], list[dict[str, Any]]]


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def events(lines: Lines) -> list[tuple[str, str]]:
    """Return the (level, event) of each outage line."""
    return [
        (line["level"], line["event"]) for line in lines() if line["logger"] == "sms_dispatch.api.outages"
    ]


def test_many_failed_requests_then_one_served_log_two_lines(json_log: Lines) -> None:
    """50 requests meeting a gone database log one WARNING; the first served after logs one INFO."""
    clock = Clock()
    outages = ApiOutages(monotonic=clock)
    for _ in range(50):
        outages.failed("database", DependencyUnavailable("the database does not answer"), path="/stats")
        clock.now_s += 0.4
    started = outages.now()
    clock.now_s += 0.01
    outages.answered("database", started_at=started, path="/stats")
    outages.answered("database", started_at=outages.now(), path="/stats")
    assert events(json_log) == [
        ("warning", "database unavailable"),
        ("info", "database available again"),
    ]
    back = next(line for line in json_log() if line["event"] == "database available again")
    assert back["failures"] == 50 and back["down_s"] == 20.01


def test_a_request_that_started_before_the_failure_does_not_end_the_outage(json_log: Lines) -> None:
    """A request in flight when the database went away may still succeed: that is not "back"."""
    clock = Clock()
    outages = ApiOutages(monotonic=clock)
    in_flight_since = outages.now()
    clock.now_s += 1
    outages.failed("database", ConnectionRefusedError(111, "refused"))
    clock.now_s += 1
    outages.answered("database", started_at=in_flight_since)
    assert outages.log_of("database").down
    outages.answered("database", started_at=outages.now())
    assert not outages.log_of("database").down
    assert [event for _, event in events(json_log)] == ["database unavailable", "database available again"]


def test_an_answer_without_an_outage_logs_nothing(json_log: Lines) -> None:
    """Successes while everything answers are silent."""
    outages = ApiOutages(monotonic=Clock())
    outages.answered("database", started_at=outages.now())
    outages.answered("redis", started_at=outages.now())
    assert events(json_log) == []


def test_each_dependency_has_its_own_outage(json_log: Lines) -> None:
    """Redis going away does not hide the database going away, nor does an unnamed dependency."""
    outages = ApiOutages(monotonic=Clock())
    outages.failed("redis", DependencyUnavailable("redis does not answer"))
    outages.failed("database", DependencyUnavailable("the database does not answer"))
    outages.failed(None, DependencyUnavailable("something does not answer"))
    assert [event for _, event in events(json_log)] == [
        "redis unavailable",
        "database unavailable",
        "a dependency unavailable",
    ]


def test_the_operations_that_need_the_database_are_those_documenting_a_503() -> None:
    """Listings, actions, the scheduler, stats and readiness need the database; liveness does not."""
    operations = database_operations(openapi_document())
    assert {
        ("/messages/sent", "GET"),
        ("/messages", "POST"),
        ("/messages/{message_id}/retry", "POST"),
        ("/scheduler", "POST"),
        ("/scheduler", "GET"),
        ("/stats", "GET"),
        ("/ready", "GET"),
    } <= operations
    assert not {("/", "GET"), ("/health", "GET"), ("/ping", "GET"), ("/metrics", "GET")} & operations
