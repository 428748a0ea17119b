"""The listings' statements, built once per shape: which filters, which way to the page, which backend.

A listing request binds values into one of these; building and compiling a statement costs
more than running it here, so each shape is built on first use and reused (SQLAlchemy then
finds its compiled form in its cache at once). Every statement answers the page *and* what
the API adds to it in one round trip:

- ``limit + 1`` rows: the extra row, dropped, says whether a next page follows;
- the exact total (live messages of the status, from the kept counts of migration 0003), as
  a column ``total`` of every row: an uncorrelated scalar subquery the database evaluates once.

The ways to a page of the sent listing (``sent_at DESC, id DESC``):

- ``FIRST``: the first rows of the index range;
- ``AFTER``: keyset, rows after a position, one seek at any depth (``_sent_after_arms``);
- ``OFFSET``: a deferred join, which skips rows in the index alone and reads only the page's
  rows from the table;
- ``HOURS`` (PostgreSQL, no filter, deep pages): ``SENT_BY_HOURS``, which finds the hour the
  page starts in from the kept per-hour counts (migration 0007) and skips only within it.
"""

from __future__ import annotations

import enum
import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Label,
    Select,
    String,
    TextualSelect,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    tuple_,
    union_all,
)

from sms_dispatch.adapters.tables import (
    SUCCESS,
    UtcDateTime,
    Uuid36,
    message_count_deltas,
    message_counts,
    messages,
)
from sms_dispatch.domain import Status

_m = messages
_live = _m.c.deleted_at.is_(None)

# Statuses as literals: the planner then knows which status it reads (a generic plan for a
# bound `status = $1` could pick the wrong index for a rare status such as FAILED).
_STATUS_LITERAL = {status: literal_column(f"'{status.value}'", String()) for status in Status}

ROWS = bindparam("rows", type_=Integer())  # the page size plus one
SKIP = bindparam("skip", type_=Integer())
_TO = bindparam("to", type_=String())
_SINCE = bindparam("since", type_=UtcDateTime())
_UNTIL = bindparam("until", type_=UtcDateTime())
_AFTER_AT = bindparam("after_at", type_=UtcDateTime())
_AFTER_ID = bindparam("after_id", type_=Uuid36())

# The kept counts and the deltas not yet folded in: read together, in one snapshot, exact.
_counts = union_all(
    select(message_counts.c.status, message_counts.c.total.label("n")),
    select(message_count_deltas.c.status, message_count_deltas.c.delta.label("n")),
).subquery("counts")
COUNTS_BY_STATUS = select(_counts.c.status, func.sum(_counts.c.n)).group_by(_counts.c.status)


def count_statement(status: Status | None) -> Select[Any]:
    """Return the query of how many live messages have ``status`` (every status when None)."""
    statement = select(func.coalesce(func.sum(_counts.c.n), 0))
    return statement if status is None else statement.where(_counts.c.status == status.value)


@functools.cache
def total_column(status: Status | None) -> Label[Any]:
    """The total of ``status`` as a column ``total`` (evaluated once per statement)."""
    return count_statement(status).scalar_subquery().label("total")


class Way(enum.Enum):
    """How a sent listing reaches its page."""

    FIRST = "first"
    AFTER = "after"
    OFFSET = "offset"


def _filters(time: ColumnElement[Any], *, to: bool, since: bool, until: bool) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if to:
        conditions.append(_m.c.to == _TO)
    if since:
        conditions.append(time >= _SINCE)
    if until:
        conditions.append(time < _UNTIL)
    return conditions


@functools.cache
def sent_statement(
    way: Way, *, to: bool, since: bool, until: bool, postgres: bool, dated: bool = True
) -> Select[Any]:
    """The sent listing of one shape; binds ``rows`` and as the shape needs ``skip``, ``to``,
    ``since``, ``until``, ``after_at`` (``dated``: the position has a ``sent_at``) and ``after_id``.
    The total comes with it when nothing filters the listing."""
    conditions = [_m.c.status == SUCCESS, _live, *_filters(_m.c.sent_at, to=to, since=since, until=until)]
    total = [] if to or since or until else [total_column(Status.SUCCESS)]
    order = (_m.c.sent_at.desc(), _m.c.id.desc())
    if way is Way.FIRST:
        return select(_m, *total).where(*conditions).order_by(*order).limit(ROWS)
    if way is Way.OFFSET:
        skipped = select(_m.c.id).where(*conditions).order_by(*order).limit(ROWS).offset(SKIP)
        return select(_m, *total).where(_m.c.id.in_(skipped)).order_by(*order)
    parts = [
        select(_m).where(*conditions, arm).order_by(*arm_order).limit(ROWS)
        for arm, arm_order in _sent_after_arms(postgres=postgres, dated=dated)
    ]
    if len(parts) == 1:
        return parts[0].add_columns(*total)
    both = union_all(*(select(part.subquery()) for part in parts)).subquery()
    return select(both, *total).order_by(both.c.sent_at.desc(), both.c.id.desc()).limit(ROWS)


def _sent_after_arms(*, postgres: bool, dated: bool) -> list[tuple[ColumnElement[bool], tuple[Any, ...]]]:
    """The index ranges (arms) of the rows after a position in ``sent_at DESC, id DESC`` order.

    ``sent_at`` may be NULL, and each database puts NULLs where its own ``DESC`` does: first on
    PostgreSQL, last on SQLite. The rows after a position are one or two ranges: rows with a
    sent_at after it, rows without one after it. Each arm is its own seek (an ``OR`` of the
    two would scan the index from its start); two arms are merged with ``UNION ALL``, only
    when the position or the database's NULL order needs both.
    """
    later = tuple_(_m.c.sent_at, _m.c.id) < tuple_(_AFTER_AT, _AFTER_ID)
    undated = and_(_m.c.sent_at.is_(None), _m.c.id < _AFTER_ID)
    by_time, by_id = (_m.c.sent_at.desc(), _m.c.id.desc()), (_m.c.id.desc(),)
    if not dated and postgres:
        return [(undated, by_id), (_m.c.sent_at.is_not(None), by_time)]
    if not dated:
        return [(undated, by_id)]
    if postgres:
        return [(later, by_time)]
    return [(later, by_time), (_m.c.sent_at.is_(None), by_id)]


@functools.cache
def messages_statement(
    status: Status | None, *, to: bool, since: bool, until: bool, after: bool
) -> Select[Any]:
    """The listing of every live message, newest ``created_at`` first, of one shape; binds
    ``rows`` and as the shape needs ``to``, ``since``, ``until``, ``after_at``, ``after_id``.
    The total comes with it when at most ``status`` filters the listing."""
    conditions = [_live, *_filters(_m.c.created_at, to=to, since=since, until=until)]
    if status is not None:
        conditions.append(_m.c.status == _STATUS_LITERAL[status])
    if after:
        conditions.append(tuple_(_m.c.created_at, _m.c.id) < tuple_(_AFTER_AT, _AFTER_ID))
    total = [] if to or since or until else [total_column(status)]
    order = (_m.c.created_at.desc(), _m.c.id.desc())
    return select(_m, *total).where(*conditions).order_by(*order).limit(ROWS)


# PostgreSQL, no filter: a deep page through the per-hour counts (migration 0007), exact. The
# ids of the page come from the function ``sent_page_by_hours`` (see the migration), the rows
# and the total from this statement: one statement, one snapshot (the function is STABLE and
# reads the caller's snapshot), so counts, total and rows agree with each other.
_COLUMNS = ", ".join(f'm."{column.name}"' for column in _m.c)
SENT_BY_HOURS: TextualSelect = (
    text(
        f"""
SELECT {_COLUMNS}, (SELECT coalesce(sum(n), 0) FROM (
    SELECT total AS n FROM message_counts WHERE status = 'SUCCESS'
    UNION ALL SELECT delta FROM message_count_deltas WHERE status = 'SUCCESS') AS counts) AS total
FROM messages AS m
WHERE m.id IN (SELECT sent_page_by_hours(:skip, :rows))
ORDER BY m.sent_at DESC, m.id DESC
"""  # noqa: S608 - formats in constants, no input
    )
    .bindparams(SKIP, ROWS)
    .columns(*_m.c, literal_column("total", Integer()))
)
