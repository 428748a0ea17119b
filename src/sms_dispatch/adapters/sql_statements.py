"""The claim and finish statements, built once: the two hot paths of the store.

Where the backends differ each has its own statement: PostgreSQL claims with
``FOR UPDATE SKIP LOCKED`` and finishes a batch with one ``UPDATE ... FROM unnest(...)``;
SQLite claims through ``INDEXED BY`` and finishes row by row in one transaction.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    Row,
    String,
    Update,
    and_,
    any_,
    bindparam,
    case,
    column,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from sms_dispatch.adapters.tables import DUE_INDEX, PENDING, SENDING, UtcDateTime, messages
from sms_dispatch.domain import Message, Status, Transition

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

# SQLite: one transition as bound parameters `t_<field>`, applied row by row.
_one = SimpleNamespace(**{name: bindparam(f"t_{name}", type_=type_) for name, type_ in TRANSITION.items()})

RELEASED = {"lease_until": None, "claim_token": None, "claimed_by": None}


def _finish_statement(v: Any) -> Update:
    """The guarded UPDATE of a finish, taking the transition's fields from ``v``.

    A refund hands back a claim that was never sent: the attempt is undone and the row keeps
    what it had. Any other transition writes its outcome.
    """

    def outcome(name: str) -> Any:
        return case((v.refund, _m.c[name]), else_=getattr(v, name))

    return (
        update(_m)
        .where(_m.c.id == v.id, _m.c.status == SENDING, _m.c.claim_token == v.claim_token)
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
FINISH_ONE = _finish_statement(_one)


def transition_fields(t: Transition, now: datetime) -> dict[str, Any]:
    """Return the values finish binds for one transition (see ``TRANSITION``)."""
    return {
        "id": t.id,
        "claim_token": t.claim_token,
        "status": t.status.value,
        "message_id": t.message_id,
        "raw_response": t.raw_response,
        "last_error": t.last_error,
        "sent_at": t.sent_at,
        "next_attempt_at": _next_attempt_at(t, now),
        "refund": t.refund_attempt,
    }


def _next_attempt_at(transition: Transition, now: datetime) -> datetime | None:
    """Return when the row is due next: the given time, else ``now`` for a retry; None keeps it.

    A refunded claim keeps its time, so the row keeps its place at the head of the queue.
    """
    if transition.next_attempt_at is not None:
        return transition.next_attempt_at
    if transition.status is Status.PENDING and not transition.refund_attempt:
        return now
    return None


_MESSAGE_COLUMNS = [field.name for field in fields(Message) if field.name != "status"]


def from_row(row: Row[Any]) -> Message:
    """Turn one ``messages`` row into a ``Message``."""
    values = row._mapping
    return Message(status=Status(values["status"]), **{name: values[name] for name in _MESSAGE_COLUMNS})
