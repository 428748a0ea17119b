"""The plain data the ports exchange: pages, positions, filters, scheduler and instance state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sms_dispatch.domain import Message, Status


@dataclass(frozen=True, slots=True)
class Position:
    """Where a keyset page ended: its last row's sort time (``sent_at`` or ``created_at``) and id.

    The next page holds the rows that sort after it (older, or as old with a smaller id).
    """

    at: datetime | None
    id: UUID


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, where the next one starts, and the total it was cut from.

    ``total`` is exact when counting is cheap (read from the kept counts), else None;
    ``next_after`` is None on the last page.
    """

    items: list[Message]
    total: int | None
    next_after: Position | None = None


@dataclass(frozen=True, slots=True)
class SchedulerState:
    """The fleet-wide scheduler switch and the time of the last batch slot taken."""

    running: bool
    last_run_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A running dispatcher as the fleet sees it."""

    name: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Which messages a listing or a bulk action covers; None means any.

    ``since`` (inclusive) and ``until`` (exclusive) bound ``created_at``; the sent listing
    bounds ``sent_at`` instead.
    """

    status: Status | None = None
    to: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_class: str | None = None
    """The ``error_class`` of the message's last applied attempt (``invalid``, ``http_4xx``, ...).
    Bulk retry only: the listings do not filter on it (it is no index range)."""
