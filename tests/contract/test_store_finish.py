"""Store contract: finishing claimed messages (token checks, retries, refunds) and their attempt history."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from sms_dispatch.domain import AttemptOutcome, AttemptRecord, Status, Transition
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject, add, claim, record, stored


async def test_finish_applies_with_the_right_token(subject: Subject, clock: FakeClock) -> None:
    """A transition under the row's token is applied and releases the claim."""
    [message] = await add(subject.store, clock, 1, gap_s=0)
    await claim(subject.store, clock)
    clock.advance(2)
    done = Transition(message.id, "token-a", Status.SUCCESS, "p-1", '{"ok":1}', sent_at=clock.now())
    assert await subject.store.finish([done], now=clock.now()) == {message.id}
    row = await stored(subject.store, message.id)
    assert (row.status, row.message_id, row.raw_response, row.sent_at) == (
        Status.SUCCESS,
        "p-1",
        '{"ok":1}',
        clock.now(),
    )
    assert (row.claim_token, row.lease_until, row.updated_at) == (None, None, clock.now())
    assert (row.attempts, row.next_attempt_at) == (1, message.next_attempt_at)


async def test_finish_refuses_a_wrong_token(subject: Subject, clock: FakeClock) -> None:
    """A transition under another token leaves the row as it is."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    late = Transition(message.id, "someone-else", Status.FAILED, last_error="late")
    assert await subject.store.finish([late], now=clock.now()) == set()
    assert await subject.store.get(message.id) == claimed


async def test_finish_refuses_a_row_not_sending(subject: Subject, clock: FakeClock) -> None:
    """A transition for a row that is no longer SENDING (finished already) is refused."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    await subject.store.finish([Transition(message.id, "token-a", Status.FAILED)], now=clock.now())
    again = Transition(message.id, "token-a", Status.SUCCESS, "p-2", sent_at=clock.now())
    assert await subject.store.finish([again], now=clock.now()) == set()
    row = await stored(subject.store, message.id)
    assert row.status is Status.FAILED


async def test_finish_returns_exactly_the_applied_ids(subject: Subject, clock: FakeClock) -> None:
    """In a mixed batch only the transitions still holding their claim are applied."""
    first, second, third = await add(subject.store, clock, 3)
    await claim(subject.store, clock)
    batch = [
        Transition(first.id, "token-a", Status.SUCCESS, "p-1", sent_at=clock.now()),
        Transition(second.id, "wrong", Status.SUCCESS, "p-2", sent_at=clock.now()),
        Transition(third.id, "token-a", Status.FAILED, last_error="400 bad number"),
        Transition(uuid4(), "token-a", Status.SUCCESS),
    ]
    assert await subject.store.finish(batch, now=clock.now()) == {first.id, third.id}
    assert await subject.store.finish([], now=clock.now()) == set()


async def test_finish_retry_is_due_at_the_given_time(subject: Subject, clock: FakeClock) -> None:
    """A PENDING transition with a time makes the row due then, keeping the error."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    retry_at = clock.now() + timedelta(seconds=90)
    retry = Transition(message.id, "token-a", Status.PENDING, last_error="503", next_attempt_at=retry_at)
    await subject.store.finish([retry], now=clock.now())
    row = await stored(subject.store, message.id)
    assert (row.status, row.next_attempt_at, row.last_error, row.attempts) == (
        Status.PENDING,
        retry_at,
        "503",
        1,
    )


async def test_finish_retry_without_a_time_is_due_now(subject: Subject, clock: FakeClock) -> None:
    """A PENDING transition without a time makes the row due at the finish time."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    clock.advance(5)
    await subject.store.finish([Transition(message.id, "token-a", Status.PENDING)], now=clock.now())
    row = await stored(subject.store, message.id)
    assert (row.status, row.next_attempt_at) == (Status.PENDING, clock.now())


async def test_finish_refund_hands_the_claim_back_untouched(subject: Subject, clock: FakeClock) -> None:
    """A refund returns the row to PENDING as it was before the claim: attempt undone, same place."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    retry_at = clock.now() + timedelta(seconds=5)
    failed_once = Transition(
        message.id, "token-a", Status.PENDING, None, "busy", "503", next_attempt_at=retry_at
    )
    await subject.store.finish([failed_once], now=clock.now())
    clock.advance(5)
    [before] = await claim(subject.store, clock, claimant="token-b")
    refund = Transition(message.id, "token-b", Status.PENDING, refund_attempt=True)
    assert await subject.store.finish([refund], now=clock.now()) == {message.id}
    row = await stored(subject.store, message.id)
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.PENDING, 1, before.next_attempt_at)
    assert (row.last_error, row.raw_response, row.claim_token, row.lease_until) == ("503", "busy", None, None)
    assert [m.id for m in await claim(subject.store, clock, claimant="token-c")] == [message.id]


async def test_finish_refund_of_a_first_claim_leaves_no_attempt(subject: Subject, clock: FakeClock) -> None:
    """A refunded first claim leaves the row never tried, as PENDING."""
    [message] = await add(subject.store, clock, 1)
    await claim(subject.store, clock)
    await subject.store.finish(
        [Transition(message.id, "token-a", Status.PENDING, refund_attempt=True)], now=clock.now()
    )
    row = await stored(subject.store, message.id)
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.PENDING, 0, message.next_attempt_at)


async def test_finish_records_the_attempts_in_order(subject: Subject, clock: FakeClock) -> None:
    """finish stores each attempt record with every field, returned by history as recorded."""
    [message] = await add(subject.store, clock, 1)
    [claimed] = await claim(subject.store, clock)
    clock.advance(1)
    attempt = record(
        claimed,
        AttemptOutcome.RETRYABLE,
        http_status=503,
        error_class="http_5xx",
        error="provider answered HTTP 503: busy",
        response_excerpt="busy",
        duration_ms=41.25,
    )
    retry = Transition(message.id, "token-a", Status.PENDING, last_error="503", next_attempt_at=clock.now())
    await subject.store.finish([retry], now=clock.now(), attempts=[attempt])
    [second] = await claim(subject.store, clock, claimant="token-b")
    delivered = record(second, started_at=clock.now(), http_status=202, response_excerpt='{"ok":1}')
    done = Transition(message.id, "token-b", Status.SUCCESS, "p-1", sent_at=clock.now())
    await subject.store.finish([done], now=clock.now(), attempts=[delivered])
    assert await subject.store.history(message.id) == [attempt, delivered]
    assert [a.started_at.utcoffset() for a in await subject.store.history(message.id)] == [timedelta(0)] * 2


async def test_finish_keeps_a_late_attempt_marked_not_applied(subject: Subject, clock: FakeClock) -> None:
    """An attempt whose transition lost the race is kept with applied=False; one of an unknown id is not."""
    first, second = await add(subject.store, clock, 2)
    claimed = await claim(subject.store, clock)
    late = Transition(second.id, "someone-else", Status.SUCCESS, "p-2", sent_at=clock.now())
    ghost = AttemptRecord(uuid4(), 1, clock.now(), 1.0, AttemptOutcome.DELIVERED)
    attempts = [record(claimed[0]), record(claimed[1]), ghost]
    done = Transition(first.id, "token-a", Status.SUCCESS, "p-1", sent_at=clock.now())
    assert await subject.store.finish([done, late], now=clock.now(), attempts=attempts) == {first.id}
    assert [a.applied for a in await subject.store.history(first.id)] == [True]
    assert [a.applied for a in await subject.store.history(second.id)] == [False]
    assert await subject.store.history(ghost.message_id) == []


async def test_history_of_a_message_never_tried_is_empty(subject: Subject, clock: FakeClock) -> None:
    """A new message, and an unknown id, have no attempts."""
    [message] = await add(subject.store, clock, 1)
    assert await subject.store.history(message.id) == []
    assert await subject.store.history(uuid4()) == []


async def test_finish_stores_text_holding_nul_with_a_replacement_character(
    subject: Subject, clock: FakeClock
) -> None:
    """A NUL in any text of a finish (PostgreSQL text cannot hold one) is stored as U+FFFD, and
    the rest of the batch is applied with it: one odd provider answer must not fail a group."""
    odd, plain = await add(subject.store, clock, 2, gap_s=0)
    await claim(subject.store, clock)
    batch = [
        Transition(odd.id, "token-a", Status.SUCCESS, "p-\x001", 'ok\x00"', "e\x00", sent_at=clock.now()),
        Transition(plain.id, "token-a", Status.SUCCESS, "p-2", "{}", sent_at=clock.now()),
    ]
    attempt = record(
        odd,
        AttemptOutcome.DELIVERED,
        error="x\x00y",
        response_excerpt="\x00",
        instance="w\x00",
        error_class="c\x00",
    )
    assert await subject.store.finish(batch, now=clock.now(), attempts=[attempt]) == {odd.id, plain.id}
    row = await stored(subject.store, odd.id)
    assert (row.message_id, row.raw_response, row.last_error) == ("p-\ufffd1", 'ok\ufffd"', "e\ufffd")
    [kept] = await subject.store.history(odd.id)
    assert (kept.error, kept.response_excerpt, kept.instance) == ("x\ufffdy", "\ufffd", "w\ufffd")
    assert kept.error_class == "c\ufffd"
    assert (await stored(subject.store, plain.id)).status is Status.SUCCESS
