"""The claim and finish statements, built once: the two hot paths of the store.

Where the backends differ each has its own statement: PostgreSQL claims with
``FOR UPDATE SKIP LOCKED`` and finishes a batch with one ``UPDATE ... FROM unnest(...)``;
SQLite claims through ``INDEXED BY`` and finishes a batch with one ``UPDATE ... FROM
json_each(...)``: on both, a batch costs a fixed number of statements whatever its size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Update,
    and_,
    any_,
    bindparam,
    case,
    column,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from sms_dispatch.adapters.tables import (
    DUE_INDEX,
    PENDING,
    SENDING,
    UtcDateTime,
    message_attempts,
    messages,
)
from sms_dispatch.domain import AttemptRecord, Status, Transition, without_nul

LEASE_EXPIRED = "lease expired (worker stopped or crashed mid-send)"

_m = messages
_live = _m.c.deleted_at.is_(None)

# SQLite: the due rows, forced onto the partial index. After ANALYZE on an all-PENDING table
# SQLite would otherwise scan by rowid on every claim (see MEASUREMENTS.md).
_SQLITE_DUE_IDS = (
    text(
        f"SELECT id FROM messages INDEXED BY {DUE_INDEX}"  # noqa: S608 - a constant index name
        " WHERE status = 'PENDING' AND deleted_at IS NULL AND next_attempt_at <= :now"
        " ORDER BY next_attempt_at, id LIMIT :claim_limit"
    )
    .bindparams(bindparam("now", type_=UtcDateTime()), bindparam("claim_limit", type_=Integer()))
    .columns(_m.c.id)
)

# PostgreSQL: the due rows, locked; rows other claimers hold are skipped. `= ANY(ARRAY(...))`
# keeps the outer UPDATE on the primary key, where `IN (SELECT ...)` scanned the whole table.
_PG_DUE_IDS = (
    select(_m.c.id)
    .where(_m.c.status == PENDING, _live, _m.c.next_attempt_at <= bindparam("now", type_=UtcDateTime()))
    .order_by(_m.c.next_attempt_at, _m.c.id)
    .limit(bindparam("claim_limit", type_=Integer()))
    .with_for_update(skip_locked=True)
)


def _claim_statement(due_ids: Any) -> Update:
    """The claim: move the rows ``due_ids`` selects to SENDING under a lease, counting an attempt."""
    return (
        update(_m)
        .where(due_ids)
        .values(
            status=Status.SENDING.value,
            attempts=_m.c.attempts + 1,
            claim_token=bindparam("claim_token", type_=String()),
            claimed_by=bindparam("claimed_by", type_=String()),
            lease_until=bindparam("lease_until", type_=UtcDateTime()),
            updated_at=bindparam("now", type_=UtcDateTime()),
        )
        .returning(*_m.c)
    )


CLAIM_PG = _claim_statement(_m.c.id == any_(func.array(_PG_DUE_IDS.scalar_subquery())))
CLAIM_SQLITE = _claim_statement(_m.c.id.in_(_SQLITE_DUE_IDS))


# The fields of one transition as finish binds them, each with its SQL type.
_FIELDS = ("id", "claim_token", "status", "message_id", "raw_response", "last_error", "sent_at")
TRANSITION: dict[str, TypeEngine[Any]] = {name: _m.c[name].type for name in (*_FIELDS, "next_attempt_at")}
TRANSITION["refund"] = Boolean()

# PostgreSQL: a batch of transitions as a derived table `v`, one typed array `all_<field>` each.
_batch = (
    func.unnest(
        *(bindparam(f"all_{name}", type_=postgresql.ARRAY(type_)) for name, type_ in TRANSITION.items())
    )
    .table_valued(*(column(name, type_) for name, type_ in TRANSITION.items()))
    .render_derived(name="v")
)

RELEASED = {"lease_until": None, "claim_token": None, "claimed_by": None}


def _sqlite_json_select(names: Sequence[str]) -> Any:
    """A derived table of the JSON rows bound as ``batch``, one column per name (``names`` order)."""
    rows = func.json_each(bindparam("batch", type_=String())).alias("j")
    return select(
        *(
            func.json_extract(literal_column("j.value"), literal_column(f"'$[{i}]'")).label(name)
            for i, name in enumerate(names)
        )
    ).select_from(rows)


def _finish_statement(v: Any) -> Update:
    """The guarded UPDATE of a finish, taking the transition's fields from ``v``.

    A refund hands back a claim that was never sent: the attempt is undone and the row keeps
    what it had. Any other transition writes its outcome.
    """

    def outcome(name: str) -> Any:
        return case((v.refund, _m.c[name]), else_=getattr(v, name))

    # `status || ''` hides the guard from the planner: with `status = 'SENDING'` it matched the
    # partial lease index and, with statistics taken while every row was PENDING, scanned every
    # SENDING row per batch (a hash join, or worse a nested loop: 50 s for 1,000 rows at 26,000
    # SENDING). Hidden, the batch joins on the primary key whatever the statistics say.
    return (
        update(_m)
        .where(_m.c.id == v.id, _m.c.status.concat("") == SENDING, _m.c.claim_token == v.claim_token)
        .values(
            status=v.status,
            message_id=outcome("message_id"),
            raw_response=outcome("raw_response"),
            last_error=outcome("last_error"),
            sent_at=outcome("sent_at"),
            attempts=case((and_(v.refund, _m.c.attempts > 0), _m.c.attempts - 1), else_=_m.c.attempts),
            next_attempt_at=func.coalesce(v.next_attempt_at, _m.c.next_attempt_at),
            updated_at=bindparam("finished_at", type_=UtcDateTime()),
            **RELEASED,
        )
        .returning(_m.c.id)
    )


FINISH_BATCH = _finish_statement(_batch.c)

# SQLite: a batch of transitions as one JSON array of arrays (fields in ``TRANSITION`` order),
# unpacked by json_each into a derived table `v`: one UPDATE ... FROM whatever the batch size,
# with a single bound parameter (so no limit on variables either).
FINISH_BATCH_SQLITE = _finish_statement(_sqlite_json_select(list(TRANSITION)).subquery("v").c)


def sqlite_batch(transitions: Sequence[Transition], now: datetime) -> str:
    """Return the JSON that ``FINISH_BATCH_SQLITE`` binds as ``batch`` for these transitions."""
    columns = transition_columns(transitions, now)
    return sqlite_rows([columns[f"all_{name}"] for name in TRANSITION])


def sqlite_attempts(records: Sequence[AttemptRecord], applied: Sequence[bool]) -> str:
    """Return the JSON that ``INSERT_ATTEMPTS_SQLITE`` binds as ``batch`` for these records."""
    columns = attempt_columns(records, applied)
    return sqlite_rows([columns[f"a_{name}"] for name in ATTEMPT_FIELDS])


def sqlite_rows(columns: Sequence[Sequence[Any]]) -> str:
    """Return column lists as one JSON array of rows, values as SQLite stores them."""
    return json.dumps(
        [[_sqlite_value(value) for value in row] for row in zip(*columns, strict=True)],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _sqlite_value(value: Any) -> Any:
    """Return a value as the SQLite columns hold it: UUIDs and times as their text forms."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):  # as ``UtcDateTime`` stores it: naive UTC text, microseconds
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


_PROVIDER_TEXT = ("all_message_id", "all_raw_response", "all_last_error")
"""The transition columns whose text may come from the provider's answer."""

_ATTEMPT_TEXT = ("a_error_class", "a_error", "a_response_excerpt", "a_instance")
"""The attempt columns whose text may come from the provider's answer or an exception."""


def transition_columns(transitions: Sequence[Transition], now: datetime) -> dict[str, list[Any]]:
    """Return the ``all_<field>`` arrays ``FINISH_BATCH`` binds (see ``TRANSITION``), one list
    per column, read straight off the transitions."""
    columns = {
        f"all_{name}": list(map(attrgetter(name), transitions)) for name in _FIELDS if name != "status"
    }
    for name in _PROVIDER_TEXT:
        columns[name] = _kept(columns[name])
    columns["all_status"] = [t.status.value for t in transitions]
    columns["all_next_attempt_at"] = [_next_attempt_at(t, now) for t in transitions]
    columns["all_refund"] = [t.refund_attempt for t in transitions]
    return columns


def _kept(column: list[Any]) -> list[Any]:
    """Return a text column as every store keeps it: each NUL as U+FFFD (``without_nul``).

    PostgreSQL text cannot hold a NUL, and one would fail the whole group's statement. A NUL is
    rare: one scan of the column joined decides, so the common case costs a C-speed pass.
    """
    if "\x00" not in "".join(filter(None, column)):
        return column
    return [without_nul(v) if isinstance(v, str) else v for v in column]


def _next_attempt_at(transition: Transition, now: datetime) -> datetime | None:
    """Return when the row is due next: the given time, else ``now`` for a retry; None keeps it.

    A refunded claim keeps its time, so the row keeps its place at the head of the queue.
    """
    if transition.next_attempt_at is not None:
        return transition.next_attempt_at
    if transition.status is Status.PENDING and not transition.refund_attempt:
        return now
    return None


# --- Attempt history and rescue (issue 3) ----------------------------------------------------

RESCUE_LOCK_KEY = 0x736D7364_72657363  # 'smsdresc': one advisory lock id for every instance

_a = message_attempts
ATTEMPT_FIELDS = tuple(c.name for c in _a.c if c.name != "id")

# PostgreSQL: a batch of attempt records as one INSERT ... SELECT FROM unnest(...), one typed
# array `a_<field>` each: one statement and one round trip whatever the batch size.
_attempt_batch = (
    func.unnest(*(bindparam(f"a_{name}", type_=postgresql.ARRAY(_a.c[name].type)) for name in ATTEMPT_FIELDS))
    .table_valued(*(column(name, _a.c[name].type) for name in ATTEMPT_FIELDS))
    .render_derived(name="a")
)
INSERT_ATTEMPTS_PG = insert(_a).from_select(ATTEMPT_FIELDS, select(*_attempt_batch.c))
# SQLite: the same rows as one JSON parameter unpacked by json_each (``sqlite_rows``): one
# statement too, where an executemany would run one INSERT per row.
INSERT_ATTEMPTS_SQLITE = insert(_a).from_select(ATTEMPT_FIELDS, _sqlite_json_select(ATTEMPT_FIELDS))

# The SENDING rows whose lease ended, with what their attempt record needs, locked for the
# rescue. PostgreSQL locks the rows (skipping those a late finisher holds); SQLite has no row
# locks, so a no-op UPDATE takes the database's write lock and returns the rows unchanged.
_EXPIRED = (_m.c.status == SENDING, _m.c.lease_until < bindparam("now", type_=UtcDateTime()))
_EXPIRED_COLUMNS = (_m.c.id, _m.c.attempts, _m.c.claimed_by, _m.c.updated_at)
LOCK_EXPIRED_PG = select(*_EXPIRED_COLUMNS).where(*_EXPIRED).with_for_update(skip_locked=True)
LOCK_EXPIRED_SQLITE = (
    update(_m).where(*_EXPIRED).values(lease_until=_m.c.lease_until).returning(*_EXPIRED_COLUMNS)
)


def attempt_columns(records: Sequence[AttemptRecord], applied: Sequence[bool]) -> dict[str, list[Any]]:
    """Return the ``a_<field>`` arrays ``INSERT_ATTEMPTS_PG`` binds: one list per column, read
    straight off the records (no dict per record: a batch holds 1,000 of them)."""
    columns = {
        f"a_{name}": list(map(attrgetter(name), records))
        for name in ATTEMPT_FIELDS
        if name not in ("outcome", "applied")
    }
    for name in _ATTEMPT_TEXT:
        columns[name] = _kept(columns[name])
    columns["a_outcome"] = [r.outcome.value for r in records]
    columns["a_applied"] = list(applied)
    return columns
