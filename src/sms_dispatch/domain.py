"""Messages, their states and the rules they obey. No I/O, no framework."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import phonenumbers

from sms_dispatch.errors import InvalidInput


class Status(enum.StrEnum):
    """Where a message is in its life; the seed's words plus SENDING and CANCELLED."""

    PENDING = "PENDING"
    SENDING = "SENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the store holds it."""

    id: UUID
    to: str
    content: str
    status: Status
    attempts: int
    created_at: datetime
    updated_at: datetime
    message_id: str | None = None
    raw_response: str | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    claim_token: str | None = None
    lease_until: datetime | None = None
    idempotency_key: str | None = None
    validated: bool = False
    """True when the row came in through the service (checked then); rows inserted by hand with
    plain SQL, or whose recipient or content was changed by hand since, are checked before
    their first send."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A valid message about to be stored: recipient in E.164, content trimmed."""

    to: str
    content: str


class RecipientCheck(enum.StrEnum):
    """How strictly a recipient is checked (``RECIPIENT_CHECK``)."""

    POSSIBLE = "possible"
    """E.164 and a length some number of its country code has: every number the Go service sent."""
    VALID = "valid"
    """Also within a number range its country assigns (``phonenumbers.is_valid_number``)."""


MESSAGE_MAX_LENGTH_DEFAULT = 255
"""The default content limit, in characters: it covers the Go service's 255 (bytes, its
``varchar(255)`` column), so every row the Go service would send is sent."""

_POSSIBLE = (phonenumbers.ValidationResult.IS_POSSIBLE, phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY)
_IMPOSSIBLE = {
    phonenumbers.ValidationResult.TOO_SHORT: "is too short for a +{code} number",
    phonenumbers.ValidationResult.TOO_LONG: "is too long for a +{code} number",
    phonenumbers.ValidationResult.INVALID_LENGTH: "has a length no +{code} number has",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has no known country code",
}


def normalise_recipient(raw: str, check: RecipientCheck = RecipientCheck.POSSIBLE) -> str:
    """Return ``raw`` as an E.164 number, or raise ``ValueError`` saying why not."""
    text = raw.strip()
    if not text:
        raise ValueError("must not be empty")
    if not text.startswith("+"):
        raise ValueError("must be in international format with a leading +, e.g. +905551111111")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"is not a phone number ({exc})") from None
    # is_possible_number's rule: a length of the country's numbers, local-only lengths included.
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible not in _POSSIBLE:
        raise ValueError(_IMPOSSIBLE[possible].format(code=parsed.country_code))
    if check is RecipientCheck.VALID and not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def stored_limit_fault(length: int, stored_max_length: int) -> str:
    """Return why content of ``length`` characters does not fit the database's content column."""
    return (
        f"is {length} characters long; the database's messages.content column holds at most"
        f" {stored_max_length} (varchar({stored_max_length}))"
    )


def check_content(raw: str, max_length: int, *, stored_max_length: int | None = None) -> str:
    """Return ``raw`` trimmed, or raise ``ValueError`` if empty, over ``max_length`` characters (or
    over ``stored_max_length``, the column's own limit where it is lower), or holding a NUL (no
    store can keep one: PostgreSQL refuses it, SQLite cuts the text there)."""
    text = raw.strip()
    if not text:
        raise ValueError("must not be empty")
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (U+0000)")
    if stored_max_length is not None and stored_max_length < max_length and len(text) > stored_max_length:
        raise ValueError(stored_limit_fault(len(text), stored_max_length))
    if len(text) > max_length:
        raise ValueError(f"is {len(text)} characters long; the limit is {max_length}")
    return text


def validate_message(
    to: str,
    content: str,
    max_length: int,
    *,
    recipient_check: RecipientCheck = RecipientCheck.POSSIBLE,
    stored_max_length: int | None = None,
) -> NewMessage:
    """Check both fields and return the normalised message; ``InvalidInput`` lists every fault."""
    faults: dict[str, str] = {}
    recipient = content_ok = ""
    try:
        recipient = normalise_recipient(to, recipient_check)
    except ValueError as exc:
        faults["to"] = str(exc)
    try:
        content_ok = check_content(content, max_length, stored_max_length=stored_max_length)
    except ValueError as exc:
        faults["content"] = str(exc)
    if faults:
        raise InvalidInput(faults)
    return NewMessage(to=recipient, content=content_ok)


@dataclass(frozen=True, slots=True)
class MessageRules:
    """What a new message must be: its content limit and how its recipient is checked."""

    max_length: int = MESSAGE_MAX_LENGTH_DEFAULT
    recipient_check: RecipientCheck = RecipientCheck.POSSIBLE
    stored_max_length: int | None = None
    """The content column's own limit where it has one (a Go table whose ``content`` the Go
    service's AutoMigrate made ``varchar(255)``); None when it holds any length."""

    def validate(self, to: str, content: str) -> NewMessage:
        """Check both fields and return the normalised message; ``InvalidInput`` lists every fault."""
        check, stored = self.recipient_check, self.stored_max_length
        return validate_message(to, content, self.max_length, recipient_check=check, stored_max_length=stored)


class Outcome(enum.StrEnum):
    """How one provider call ended."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


PROVIDER_ID_MAX_LENGTH = 100
"""The longest provider message id a store keeps (``messages.message_id``)."""


def without_nul(text: str) -> str:
    """Return ``text`` with each NUL replaced by U+FFFD: PostgreSQL text cannot hold a NUL, and
    SQLite cuts the text at it. Every store keeps text this way (a provider may answer with one)."""
    return text.replace("\x00", "\ufffd")


def kept_text(text: str | None) -> str | None:
    """Return ``text`` as a store keeps it (``without_nul``); None stays None."""
    return None if text is None else without_nul(text)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider answered to one message."""

    outcome: Outcome
    provider_message_id: str | None = None
    http_status: int | None = None
    raw_response: str | None = None
    error: str | None = None
    retry_after_s: float | None = None
    error_class: str | None = None
    """A short machine-readable kind of fault: ``timeout``, ``connection``, ``http_429``, ..."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A guarded state change: applied only while the row is SENDING under ``claim_token``."""

    id: UUID
    claim_token: str
    status: Status
    message_id: str | None = None
    raw_response: str | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    refund_attempt: bool = False
    """Set when handing back a claim that was never sent: the claim's attempt is undone."""


def backoff_delay_s(
    attempt: int,
    *,
    base_s: float,
    max_delay_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Return the wait before retry ``attempt + 1``: full-jitter exponential, or Retry-After clamped."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), max_delay_s)
    ceiling = min(max_delay_s, base_s * (2 ** max(attempt - 1, 0)))
    return (rng or random).uniform(ceiling / 2, ceiling)


RESPONSE_EXCERPT_LIMIT = 500
"""The most characters of a provider answer an attempt record keeps."""


class AttemptOutcome(enum.StrEnum):
    """How one attempt ended, as the history shows it (a hand-back is not an attempt)."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    INVALID = "invalid"
    LEASE_EXPIRED = "lease_expired"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt at sending a message, for its history."""

    message_id: UUID
    attempt: int
    started_at: datetime
    duration_ms: float
    outcome: AttemptOutcome
    http_status: int | None = None
    error_class: str | None = None
    error: str | None = None
    response_excerpt: str | None = None
    instance: str | None = None
    applied: bool = True
    """False when the answer came too late: the row had been rescued or finished by another."""


def excerpt(text: str | None) -> str | None:
    """Return ``text`` cut to ``RESPONSE_EXCERPT_LIMIT`` characters (None stays None)."""
    return None if text is None else text[:RESPONSE_EXCERPT_LIMIT]


IDEMPOTENCY_KEY_MAX_LENGTH = 200


def check_idempotency_key(raw: str) -> str:
    """Return ``raw`` if it is 1..200 printable ASCII characters, else raise ``InvalidInput``."""
    if not 1 <= len(raw) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        why = f"must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters long, not {len(raw)}"
        raise InvalidInput({"Idempotency-Key": why})
    if not all(" " <= char <= "~" for char in raw):
        raise InvalidInput({"Idempotency-Key": "must contain only printable ASCII characters"})
    return raw


def lease_expired_attempt(
    message_id: UUID, *, attempt: int, claimed_at: datetime, claimed_by: str | None, now: datetime, error: str
) -> AttemptRecord:
    """Return the record a rescue leaves: the attempt claimed at ``claimed_at`` never reported."""
    return AttemptRecord(
        message_id=message_id,
        attempt=attempt,
        started_at=claimed_at,
        duration_ms=max((now - claimed_at).total_seconds() * 1000, 0.0),
        outcome=AttemptOutcome.LEASE_EXPIRED,
        error_class="lease_expired",
        error=error,
        instance=claimed_by,
    )
