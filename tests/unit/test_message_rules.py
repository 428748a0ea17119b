"""The message rules (issue 12): every message the Go service would send is accepted and sent by
default; ``RECIPIENT_CHECK=valid`` opts into the full validity check; the content column's own
limit is named when it is the lower one."""

from __future__ import annotations

import random
import re

import pytest

from sms_dispatch.adapters.memory_cache import InMemorySentCache
from sms_dispatch.adapters.memory_store import InMemoryMessageStore
from sms_dispatch.config import load_settings
from sms_dispatch.delivery import Deliverer, DeliveryPolicy
from sms_dispatch.domain import MessageRules, RecipientCheck, Status, normalise_recipient
from sms_dispatch.errors import ConfigError, InvalidInput
from tests.conftest import FakeClock
from tests.fakes import RecordingSmsProvider


def go_seed_numbers(count: int) -> list[str]:
    """Numbers as the Go service's seed command makes them: +905 and 9 random digits."""
    rng = random.Random(12)
    return [f"+905{rng.randrange(10**9):09d}" for _ in range(count)]


def test_default_accepts_every_number_the_go_seed_makes() -> None:
    """Every +905 number of the Go seed is accepted by default; about half are not 'valid'."""
    numbers = go_seed_numbers(2000)
    assert [normalise_recipient(n) for n in numbers] == numbers
    refused = 0
    for number in numbers:
        try:
            normalise_recipient(number, RecipientCheck.VALID)
        except ValueError:
            refused += 1
    assert 800 < refused < 1400  # the finding: 53.9 % of the seed's numbers fail is_valid_number


def test_valid_check_refuses_a_number_outside_every_range() -> None:
    """A number of a possible length in no assigned range passes the default and fails 'valid'."""
    assert normalise_recipient("+1 555 555 5555") == "+15555555555"
    with pytest.raises(ValueError, match="is not a valid phone number"):
        normalise_recipient("+15555555555", RecipientCheck.VALID)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("+9055511", "is too short for a +90 number"),
        ("+90555111111111111", "is too long for a +90 number"),
        ("+9055511111111", "has a length no +90 number has"),
        ("+99912345678", "is not a phone number"),
        ("905551111111", "leading +"),
    ],
)
def test_impossible_numbers_say_why(number: str, why: str) -> None:
    """A number no country could have is refused with the reason."""
    with pytest.raises(ValueError, match=re.escape(why)):
        normalise_recipient(number)


def test_default_content_limit_covers_the_go_limit() -> None:
    """255 characters (the Go service's varchar(255)) pass the default rules; 256 do not."""
    rules = MessageRules()
    assert rules.validate("+905551111111", "a" * 255).content == "a" * 255
    with pytest.raises(InvalidInput, match="256 characters long; the limit is 255"):
        rules.validate("+905551111111", "a" * 256)


def test_a_lower_column_limit_is_named() -> None:
    """Content over the content column's own limit, lower than MESSAGE_MAX_LENGTH, names the column."""
    rules = MessageRules(max_length=1000, stored_max_length=255)
    with pytest.raises(InvalidInput) as caught:
        rules.validate("+905551111111", "a" * 300)
    assert caught.value.fields == {
        "content": "is 300 characters long; the database's messages.content column holds at most 255"
        " (varchar(255))"
    }
    tighter = MessageRules(max_length=160, stored_max_length=255)
    with pytest.raises(InvalidInput, match="the limit is 160"):
        tighter.validate("+905551111111", "a" * 200)


def test_rules_check_the_recipient_as_configured() -> None:
    """MessageRules applies its recipient check."""
    assert MessageRules().validate("+15555555555", "hi").to == "+15555555555"
    with pytest.raises(InvalidInput, match="to: is not a valid phone number"):
        MessageRules(recipient_check=RecipientCheck.VALID).validate("+15555555555", "hi")


def test_settings_default_to_the_go_compatible_rules() -> None:
    """RECIPIENT_CHECK is 'possible' and MESSAGE_MAX_LENGTH 255 unless set."""
    settings = load_settings(None)
    assert (settings.recipient_check, settings.message_max_length) == (RecipientCheck.POSSIBLE, 255)


def test_recipient_check_takes_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """RECIPIENT_CHECK=valid opts into the full validity check."""
    monkeypatch.setenv("RECIPIENT_CHECK", "valid")
    assert load_settings(None).recipient_check is RecipientCheck.VALID


def test_a_bad_recipient_check_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another RECIPIENT_CHECK stops start-up naming the variable and the choices."""
    monkeypatch.setenv("RECIPIENT_CHECK", "strict")
    with pytest.raises(
        ConfigError, match="invalid RECIPIENT_CHECK='strict': Input should be 'possible' or 'valid'"
    ):
        load_settings(None)


@pytest.mark.parametrize(("check", "expected"), [(RecipientCheck.POSSIBLE, 1), (RecipientCheck.VALID, 0)])
async def test_the_dispatcher_checks_hand_rows_with_the_configured_rule(
    clock: FakeClock, check: RecipientCheck, expected: int
) -> None:
    """A row inserted by hand to a possible but not valid number is sent by default, failed with 'valid'."""
    store, provider = InMemoryMessageStore(), RecordingSmsProvider()
    row = store.insert_by_hand("+15555555555", "x" * 200, now=clock.now())
    deliverer = Deliverer(
        store=store,
        provider=provider,
        cache=InMemorySentCache(clock),
        clock=clock,
        policy=DeliveryPolicy(batch_size=1, recipient_check=check),
        instance_name="test",
    )
    await deliverer.deliver_batch()
    stored = await store.get(row.id)
    assert stored is not None
    assert (len(provider.sent), stored.status) == (expected, Status.SUCCESS if expected else Status.FAILED)
