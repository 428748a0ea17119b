"""Rows of the store's tables turned into domain objects, read by position where it is hot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Row

from sms_dispatch.adapters.sql_statements import ATTEMPT_FIELDS
from sms_dispatch.domain import AttemptOutcome, AttemptRecord, Message, Status

_MESSAGE_FIELDS = tuple(field.name for field in fields(Message))
_STATUS_AT = _MESSAGE_FIELDS.index("status")


def from_row(row: Row[Any]) -> Message:
    """Turn one ``messages`` row into a ``Message``."""
    return from_rows([row], row._fields)[0]


def from_rows(rows: Sequence[Row[Any]], columns: Sequence[str]) -> list[Message]:
    """Turn rows of one result (its ``columns``) into ``Message``s, reading fields by position:
    a claim converts 1,000 rows at once, and a keyword dict per row cost five times as much."""
    order = [columns.index(name) for name in _MESSAGE_FIELDS]
    converted = []
    for row in rows:
        values = [row[i] for i in order]
        values[_STATUS_AT] = Status(values[_STATUS_AT])
        converted.append(Message(*values))
    return converted


def attempt_from_row(row: Row[Any]) -> AttemptRecord:
    """Turn one ``message_attempts`` row into an ``AttemptRecord``."""
    values = row._mapping
    fields_ = {name: values[name] for name in ATTEMPT_FIELDS if name != "outcome"}
    return AttemptRecord(outcome=AttemptOutcome(values["outcome"]), **fields_)
