"""Opaque listing cursors: where the next page of a listing starts, as URL-safe text.

A cursor is ``<listing>|<time>|<id>`` in unpadded base64url: the listing it belongs to
(``sent`` orders by ``sent_at``, ``created`` by ``created_at``), the last row's sort time in
ISO 8601 (empty for a sent message without ``sent_at``) and its id. Clients must treat it as
opaque: pass ``nextCursor`` back unchanged. A cursor stays valid while rows are added, because
it names a position in the order, not an offset.
"""

from __future__ import annotations

import base64
import binascii
import enum
from datetime import UTC, datetime
from uuid import UUID

from sms_dispatch.errors import InvalidInput
from sms_dispatch.ports import Position

MAX_CURSOR_LENGTH = 200
_NOT_OURS = "is not a cursor of this listing; pass back the nextCursor of the previous page unchanged"


class Listing(enum.StrEnum):
    """Which order a cursor is a position in."""

    SENT = "sent"
    CREATED = "created"


def encode_cursor(listing: Listing, position: Position | None) -> str | None:
    """Return the cursor of ``position`` in ``listing`` (None for None: there is no next page)."""
    if position is None:
        return None
    at = "" if position.at is None else position.at.astimezone(UTC).isoformat()
    raw = f"{listing.value}|{at}|{position.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(listing: Listing, cursor: str) -> Position:
    """Return the position ``cursor`` names in ``listing``; ``InvalidInput`` if it names none."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, at, id_ = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split("|")
        if kind != listing.value or len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError(kind)
        position = Position(at=_time(at, nullable=listing is Listing.SENT), id=UUID(id_))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidInput({"cursor": _NOT_OURS}) from None
    return position


def _time(text: str, *, nullable: bool) -> datetime | None:
    if not text and nullable:
        return None
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(text)
    return parsed.astimezone(UTC)
