"""Secrets never reach a log line: the redactor that ends the log pipeline."""

from __future__ import annotations

import json

from sms_dispatch.config import Settings
from sms_dispatch.observability.redaction import MASK, SecretRedactor


def test_known_secrets_are_masked_wherever_they_appear() -> None:
    """A known secret is masked inside a longer text, each time it appears."""
    redactor = SecretRedactor(["INS.provider-key"])
    line = "sending with INS.provider-key (again: key=INS.provider-key)"
    assert redactor.redact(line) == f"sending with {MASK} (again: key={MASK})"


def test_json_escaped_and_repr_forms_are_masked() -> None:
    """A secret with quotes and backslashes is masked in its JSON and repr spellings too."""
    secret = 'pa"ss\\wörd'
    redactor = SecretRedactor([secret])
    as_json = json.dumps({"event": f"x {secret} y"})
    assert secret not in redactor.redact(as_json) and json.dumps(secret)[1:-1] not in redactor.redact(as_json)
    assert repr(secret)[1:-1] not in redactor.redact(f"error={secret!r}")


def test_url_passwords_are_masked_without_knowing_them() -> None:
    """The password of any URL is masked; user, host and the rest stay readable."""
    redactor = SecretRedactor()
    assert redactor.redact("db postgresql+asyncpg://app:s3cr3t@db:5432/sms up") == (
        f"db postgresql+asyncpg://app:{MASK}@db:5432/sms up"
    )
    assert (
        redactor.redact('{"url": "redis://:hunter2@cache:6379/0"}')
        == f'{{"url": "redis://:{MASK}@cache:6379/0"}}'
    )


def test_text_without_secrets_is_unchanged() -> None:
    """A line with no secret and no URL password comes out as it went in."""
    redactor = SecretRedactor(["INS.provider-key"])
    line = "message sent message_id=5 url=http://127.0.0.1:8080/ts=12:30:00"
    assert redactor.redact(line) == line


def test_a_secret_containing_another_is_masked_whole() -> None:
    """Longer secrets are masked first, so no tail of one survives."""
    redactor = SecretRedactor(["abc", "abcdef-long-key"])
    assert redactor.redact("k=abcdef-long-key") == f"k={MASK}"


def test_the_processor_masks_the_rendered_line() -> None:
    """As the last step of the pipeline the redactor rewrites the rendered string."""
    redactor = SecretRedactor(["topsecret"])
    assert redactor(None, "info", "x=topsecret") == f"x={MASK}"


def test_settings_list_every_secret_they_hold() -> None:
    """Provider key, passwords (URL ones decoded too) and API keys are the secrets to mask."""
    settings = Settings(
        SMS_PROVIDER_KEY="INS.key",
        DATABASE_URL="postgresql://app:p%40ss@db/sms",
        REDIS_PASSWORD="redis-pw",
        API_KEYS="ops-key-123456789:operate,ro-key-123456789:read",
    )
    assert set(settings.secret_values()) == {
        "INS.key",
        "p%40ss",
        "p@ss",
        "redis-pw",
        "ops-key-123456789",
        "ro-key-123456789",
    }


def test_a_short_secret_is_masked_only_where_it_stands_alone() -> None:
    """SMS_PROVIDER_KEY=K masks ``key=K`` but leaves the K inside other words alone."""
    redactor = SecretRedactor(["K"])
    assert redactor.redact("API_KEYS is not set") == "API_KEYS is not set"
    assert redactor.redact("key=K, Keep OK") == f"key={MASK}, Keep OK"
    assert redactor.redact('{"key": "K"}') == f'{{"key": "{MASK}"}}'


def test_a_secret_inside_a_longer_word_is_left_alone() -> None:
    """A secret glued to letters, digits or _ is another word, not the secret."""
    redactor = SecretRedactor(["pass123"])
    assert redactor.redact("bypass1234 xpass123 pass123_x") == "bypass1234 xpass123 pass123_x"
    assert redactor.redact("pw=pass123;") == f"pw={MASK};"


def test_a_secret_edged_with_punctuation_is_masked_anywhere() -> None:
    """Where the secret itself starts or ends with punctuation, no boundary is needed on that side."""
    redactor = SecretRedactor(["!x!"])
    assert redactor.redact("a!x!b") == f"a{MASK}b"
