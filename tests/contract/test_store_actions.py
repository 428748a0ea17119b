"""Store contract: the operator's actions: retry and cancel one message, retry a filtered batch."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from sms_dispatch.domain import AttemptOutcome, Status, Transition
from sms_dispatch.ports import MessageFilter
from tests.conftest import FakeClock
from tests.contract.store_helpers import Subject, add, claim, failed, record, sent, stored


async def test_retry_replays_a_failed_message(subject: Subject, clock: FakeClock) -> None:
    """retry returns a FAILED message to PENDING, due now, attempts 0, keeping its last error."""
    [dead] = await failed(subject.store, clock, 1)
    clock.advance(60)
    replayed = await subject.store.retry(dead.id, now=clock.now())
    assert replayed is not None and replayed == await subject.store.get(dead.id)
    assert (replayed.status, replayed.attempts, replayed.next_attempt_at, replayed.updated_at) == (
        Status.PENDING,
        0,
        clock.now(),
        clock.now(),
    )
    assert replayed.last_error == "HTTP 400 bad number"
    [again] = await claim(subject.store, clock, claimant="token-r")
    assert (again.id, again.attempts) == (dead.id, 1)


async def test_retry_replays_a_cancelled_message(subject: Subject, clock: FakeClock) -> None:
    """retry returns a CANCELLED message to PENDING."""
    [message] = await add(subject.store, clock, 1)
    await subject.store.cancel(message.id, now=clock.now())
    replayed = await subject.store.retry(message.id, now=clock.now())
    assert replayed is not None and replayed.status is Status.PENDING


async def test_retry_refuses_other_statuses(subject: Subject, clock: FakeClock) -> None:
    """retry of a PENDING, SENDING or SUCCESS message, a deleted or an unknown one, changes nothing."""
    [success] = await sent(subject.store, clock, 1)
    pending, sending, deleted = await add(subject.store, clock, 3)
    await claim(subject.store, clock, limit=2)
    await subject.soft_delete(deleted.id, clock.now())
    before = [await subject.store.get(m.id) for m in (success, pending, sending)]
    for message_id in (success.id, pending.id, sending.id, deleted.id, uuid4()):
        assert await subject.store.retry(message_id, now=clock.now()) is None
    assert [await subject.store.get(m.id) for m in (success, pending, sending)] == before


async def test_cancel_moves_pending_to_cancelled_never_claimed(subject: Subject, clock: FakeClock) -> None:
    """A cancelled message is CANCELLED, returned as changed, and never claimed."""
    [message] = await add(subject.store, clock, 1)
    clock.advance(1)
    cancelled = await subject.store.cancel(message.id, now=clock.now())
    assert cancelled is not None and cancelled == await subject.store.get(message.id)
    assert (cancelled.status, cancelled.updated_at) == (Status.CANCELLED, clock.now())
    clock.advance(3600)
    assert await claim(subject.store, clock) == []


async def test_cancel_refuses_other_statuses(subject: Subject, clock: FakeClock) -> None:
    """cancel of a SENDING, SUCCESS, FAILED or CANCELLED message, or an unknown one, changes nothing."""
    [success] = await sent(subject.store, clock, 1)
    [dead] = await failed(subject.store, clock, 1)
    sending, other = await add(subject.store, clock, 2)
    await claim(subject.store, clock, limit=1, claimant="token-s")
    await subject.store.cancel(other.id, now=clock.now())
    before = [await subject.store.get(m.id) for m in (success, dead, sending, other)]
    for message_id in (success.id, dead.id, sending.id, other.id, uuid4()):
        assert await subject.store.cancel(message_id, now=clock.now()) is None
    assert [await subject.store.get(m.id) for m in (success, dead, sending, other)] == before


async def test_retry_batch_replays_matching_rows_in_id_order(subject: Subject, clock: FakeClock) -> None:
    """retry_batch replays up to limit matching rows after ``after``, ascending ids, leaving the rest."""
    dead = await failed(subject.store, clock, 5)
    ids = sorted(m.id for m in dead)
    first = await subject.store.retry_batch(MessageFilter(), now=clock.now(), after=None, limit=2)
    rest = await subject.store.retry_batch(MessageFilter(), now=clock.now(), after=first[-1], limit=10)
    assert (first, rest) == (ids[:2], ids[2:])
    assert {(m.status, m.attempts) for m in [await stored(subject.store, i) for i in ids]} == {
        (Status.PENDING, 0)
    }
    assert await subject.store.retry_batch(MessageFilter(), now=clock.now(), after=None, limit=10) == []


async def test_retry_batch_honours_the_filter(subject: Subject, clock: FakeClock) -> None:
    """Only rows of the filter's status, recipient and creation window are replayed."""
    early = await failed(subject.store, clock, 2)
    since = clock.now()
    middle = await failed(subject.store, clock, 2, to="+905559999999")
    until = clock.now()
    await failed(subject.store, clock, 1, to="+905558888888")
    [cancelled] = await add(subject.store, clock, 1)
    await subject.store.cancel(cancelled.id, now=clock.now())
    window = MessageFilter(status=Status.FAILED, since=since, until=until)
    assert set(await subject.store.retry_batch(window, now=clock.now(), after=None, limit=10)) == {
        m.id for m in middle
    }
    to = MessageFilter(to=early[0].to)
    assert await subject.store.retry_batch(to, now=clock.now(), after=None, limit=10) == [early[0].id]
    only_cancelled = MessageFilter(status=Status.CANCELLED)
    assert await subject.store.retry_batch(only_cancelled, now=clock.now(), after=None, limit=10) == [
        cancelled.id
    ]
    assert (await subject.store.count_by_status())[Status.FAILED] == 2


async def test_retry_batch_refuses_a_status_that_cannot_be_retried(
    subject: Subject, clock: FakeClock
) -> None:
    """retry_batch with status PENDING (or SUCCESS) raises ValueError."""
    for status in (Status.PENDING, Status.SUCCESS):
        with pytest.raises(ValueError, match="FAILED or CANCELLED"):
            await subject.store.retry_batch(
                MessageFilter(status=status), now=clock.now(), after=None, limit=1
            )


async def _fail_with(subject: Subject, clock: FakeClock, message_id: UUID, error_class: str) -> None:
    """Claim ``message_id`` (due alone) and fail it with an applied attempt of ``error_class``."""
    [claimed] = await claim(subject.store, clock, claimant=f"token-{error_class}")
    assert claimed.id == message_id
    attempt = record(claimed, AttemptOutcome.PERMANENT, error_class=error_class)
    failure = Transition(claimed.id, f"token-{error_class}", Status.FAILED, last_error=error_class)
    await subject.store.finish([failure], now=clock.now(), attempts=[attempt])


async def test_retry_batch_matches_the_last_applied_attempts_error_class(
    subject: Subject, clock: FakeClock
) -> None:
    """An error-class filter replays the messages whose last applied attempt has that class: an
    earlier attempt or a late answer that was not applied does not count, nor does a message
    without attempts."""
    first, second, third = await add(subject.store, clock, 3)
    for message in (first, second, third):
        await subject.store.cancel(message.id, now=clock.now())
    await subject.store.retry(first.id, now=clock.now())
    await _fail_with(subject, clock, first.id, "invalid")  # invalid, last
    await subject.store.retry(second.id, now=clock.now())
    await _fail_with(subject, clock, second.id, "invalid")
    await subject.store.retry(second.id, now=clock.now())
    await _fail_with(subject, clock, second.id, "http_4xx")  # invalid once, http_4xx last
    late = record(second, AttemptOutcome.PERMANENT, error_class="invalid")
    await subject.store.finish(
        [Transition(second.id, "token-gone", Status.FAILED)], now=clock.now(), attempts=[late]
    )  # an answer for a claim long gone: recorded, not applied
    [no_attempts] = await failed(subject.store, clock, 1)

    def matching(error_class: str) -> MessageFilter:
        return MessageFilter(error_class=error_class)

    assert await subject.store.retry_batch(matching("http_4xx"), now=clock.now(), after=None, limit=10) == [
        second.id
    ]
    assert await subject.store.retry_batch(matching("invalid"), now=clock.now(), after=None, limit=10) == [
        first.id
    ]
    assert await subject.store.retry_batch(matching("timeout"), now=clock.now(), after=None, limit=10) == []
    assert (await stored(subject.store, no_attempts.id)).status is Status.FAILED
    assert (await stored(subject.store, third.id)).status is Status.CANCELLED
